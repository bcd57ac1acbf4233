-- A street's register changes: bumped with every registration written, so a replica keeping the
-- street's volunteers in memory for matching knows with one read whether what it holds is current.
create table register_versions (
    street text not null primary key,
    version bigint not null
);
