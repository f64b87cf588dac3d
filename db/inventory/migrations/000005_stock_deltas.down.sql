DROP TABLE stock_deltas;
