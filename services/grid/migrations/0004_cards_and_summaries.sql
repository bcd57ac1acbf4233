-- Contact cards: the community's staff contacts (civic.grid.v1.StaffContact, encoded as a
-- ContactCard's community_contacts), the grid workers' names and work phones; the senior Party
-- members' desks (the encoded civic.grid.v1.Station); and the workers' monthly summaries.
alter table communities add column contacts blob;
alter table grid_workers add column display_name text not null default '';
alter table grid_workers add column phone text not null default '';

create table stations (
    street text not null,
    community_id text not null,
    station_id text not null,
    version bigint not null,
    body blob not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, community_id, station_id)
);

create table monthly_summaries (
    street text not null,
    worker text not null,
    month text not null,
    state text not null,
    notes text not null,
    figures blob,
    submitted_at text not null,
    version bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, worker, month)
);
