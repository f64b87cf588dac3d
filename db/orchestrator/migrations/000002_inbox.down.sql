DROP TABLE inbox_parked;
DROP TABLE inbox_versions;
DROP TABLE inbox;
