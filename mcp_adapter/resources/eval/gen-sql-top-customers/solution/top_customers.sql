SELECT c.name, SUM(o.amount) AS total
FROM customer AS c
JOIN purchase_order AS o ON o.customer_id = c.id
GROUP BY c.id, c.name
ORDER BY total DESC
LIMIT 3;
