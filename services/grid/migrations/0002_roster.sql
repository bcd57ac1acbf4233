-- The roster: households placed in grids, residents with their ID number and phone sealed
-- (AES-256-GCM, the key's id inside the sealed text) and findable by keyed hashes only, and the
-- log of every full read.
create table households (
    street text not null,
    household_id text not null,
    building text not null,
    address text not null,
    latitude double precision not null,
    longitude double precision not null,
    community_id text not null,
    grid_id text not null,
    tags text not null,
    resident_count bigint not null,
    last_visit_time text not null,
    version bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, household_id)
);
create index households_by_grid on households (street, community_id, grid_id, household_id);
create index households_by_place on households (street, longitude, latitude);

create table residents (
    street text not null,
    household_id text not null,
    resident_id text not null,
    display_name text not null,
    id_number_sealed text not null,
    id_number_hash text not null,
    phone_sealed text not null,
    phone_hash text not null,
    birth_date text not null,
    tags text not null,
    consent_note text not null,
    user_name text not null,
    removed_at text not null,
    version bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, household_id, resident_id)
);
create index residents_by_id_number on residents (street, id_number_hash);
create index residents_by_phone on residents (street, phone_hash);
create index residents_by_user on residents (street, user_name);

create table access_records (
    street text not null,
    record_id text not null,
    reader text not null,
    role text not null,
    resident text not null,
    reason text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, record_id)
);
create index access_records_newest on access_records (street, created_at, record_id);
