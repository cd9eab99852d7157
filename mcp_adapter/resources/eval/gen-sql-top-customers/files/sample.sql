INSERT INTO customer (id, name, city) VALUES (1, 'Ada', 'London'), (2, 'Grace', 'New York'), (3, 'Linus', 'Helsinki');
INSERT INTO purchase_order (customer_id, amount, placed_on) VALUES
    (1, 20.0, '2024-01-02'), (2, 35.5, '2024-01-03'), (1, 30.0, '2024-02-01'), (3, 5.0, '2024-02-10');
