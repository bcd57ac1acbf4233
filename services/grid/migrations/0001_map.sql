-- The map: communities, grids (the current boundary as GeoJSON with its bounding box, so that
-- candidates for an overlap are found by SQL), every drawing of a boundary, the workers and the
-- covers.
create table communities (
    street text not null,
    community_id text not null,
    display_name text not null,
    office text not null,
    version bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, community_id)
);

create table grids (
    street text not null,
    community_id text not null,
    grid_id text not null,
    display_name text not null,
    boundary text not null,
    revision bigint not null,
    min_longitude double precision not null,
    min_latitude double precision not null,
    max_longitude double precision not null,
    max_latitude double precision not null,
    version bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, community_id, grid_id)
);

create table grid_revisions (
    street text not null,
    community_id text not null,
    grid_id text not null,
    revision bigint not null,
    boundary text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, community_id, grid_id, revision)
);

create table grid_workers (
    street text not null,
    community_id text not null,
    grid_id text not null,
    worker text not null,
    duties text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, community_id, grid_id, worker)
);
create index grid_workers_by_worker on grid_workers (street, worker);

create table grid_covers (
    street text not null,
    community_id text not null,
    grid_id text not null,
    worker text not null,
    start_date text not null,
    end_date text not null,
    covers_for text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, community_id, grid_id, worker, start_date)
);
create index grid_covers_by_worker on grid_covers (street, worker, end_date);
