HOST = 'localhost'
TIMEOUT = 30
