-- Prefect gets a database of its own beside MLflow's (POSTGRES_DB).
CREATE DATABASE prefect;
