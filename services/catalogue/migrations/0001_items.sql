-- Service items: the editable content as an encoded civic.catalogue.v1.ServiceItem, with the
-- columns lists, filters and search need beside it.
create table items (
    street text not null,
    item_id text not null,
    state text not null,
    revision bigint not null,
    version bigint not null,
    body blob not null,
    title text not null,
    category text not null,
    handling_mode text not null,
    search_doc text not null,
    created_at text not null,
    updated_at text not null,
    publish_time text,
    primary key (street, item_id)
);
create index items_by_state on items (street, state, item_id);

-- Every published revision, kept unchanged: an application keeps the one it was filed under.
create table item_revisions (
    street text not null,
    item_id text not null,
    revision bigint not null,
    body blob not null,
    publish_time text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, item_id, revision)
);
