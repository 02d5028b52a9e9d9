-- Run by the postgres image once, when its data volume is first initialised. POSTGRES_DB
-- (mlflow) exists by then; this adds the Prefect server's database, owned by POSTGRES_USER.
CREATE DATABASE prefect;
