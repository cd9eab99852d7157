HOST = 'localhost'
TIMEOUT = 10
