-- The resident's rating of a task (1 to 5; 0 for none), given with their confirmation: what the
-- quarterly service report of an in-service Party member shows their employer.
alter table claims add column rating bigint not null default 0;
