COLORS = ['red', 'green', 'blue']
