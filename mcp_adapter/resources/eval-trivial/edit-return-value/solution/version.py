def version():
    return '2.0'
