DROP TABLE order_views;
