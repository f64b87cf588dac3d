-- The demo catalog. ON CONFLICT keeps re-runs and hand-edited stock intact.
INSERT INTO products (sku, name, currency_code, unit_price_minor, available) VALUES
    ('SKU-KEYBOARD', 'Mechanical keyboard', 'USD', 8900, 1000),
    ('SKU-MOUSE', 'Wireless mouse', 'USD', 2900, 1000),
    ('SKU-MONITOR', '27" monitor', 'USD', 31900, 500),
    ('SKU-CABLE', 'USB-C cable', 'USD', 900, 10000),
    ('SKU-HEADSET', 'Headset', 'USD', 5900, 800),
    ('SKU-LAPTOP', 'Laptop', 'USD', 129900, 200),
    ('SKU-DOCK', 'Docking station', 'USD', 17900, 300),
    ('SKU-WEBCAM', 'Webcam', 'USD', 6900, 600),
    ('SKU-LIMITED', 'Limited edition mug', 'USD', 1500, 5)
ON CONFLICT (sku) DO NOTHING;
