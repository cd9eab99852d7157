APP_NAME = 'shop'
