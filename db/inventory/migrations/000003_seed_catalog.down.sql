DELETE FROM products
WHERE sku IN ('SKU-KEYBOARD', 'SKU-MOUSE', 'SKU-MONITOR', 'SKU-CABLE', 'SKU-HEADSET',
              'SKU-LAPTOP', 'SKU-DOCK', 'SKU-WEBCAM', 'SKU-LIMITED')
  AND NOT EXISTS (SELECT 1 FROM reservation_items ri WHERE ri.sku = products.sku);
