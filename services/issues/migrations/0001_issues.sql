-- Issues: the columns lists, sweeps and authorisation filter on, and the issue itself encoded
-- (civic.issues.v1.Issue, without its etag). `source_key` makes intake idempotent by origin: a
-- work order of the city platform (`{service}|{order id}`) or a visit's problem
-- (`{visit}#{index}`); `self|{issue}` for the rest. An issue without a location has `located` 0 and
-- zeros for its coordinates (numbers are never bound as NULL: a statement prepared with a NULL
-- there would take the wrong type on PostgreSQL).
create table issues (
    street text not null,
    issue_id text not null,
    state text not null,
    triage text not null,
    source text not null,
    category text not null,
    community_id text not null,
    grid_id text not null,
    assignee text not null,
    department text not null,
    referred_to text not null,
    reporter text not null,
    created_by text not null,
    pending text not null,
    escalation bigint not null,
    response_due text not null,
    resolution_due text not null,
    paused bigint not null,
    revisit_date text not null,
    resolve_time text not null,
    located bigint not null,
    latitude double precision not null,
    longitude double precision not null,
    source_key text not null,
    reporter_count bigint not null,
    version bigint not null,
    body blob not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, issue_id)
);
create unique index issues_by_source_key on issues (street, source_key);
create index issues_newest on issues (street, created_at, issue_id);
create index issues_by_grid on issues (street, grid_id, created_at, issue_id);
create index issues_by_community on issues (street, community_id, created_at, issue_id);
create index issues_by_state on issues (state, resolution_due);
create index issues_by_category on issues (street, category, created_at);
-- Duplicate suggestions: a narrow band of latitude within a category, then the rest.
create index issues_near on issues (street, category, latitude, longitude);
create index issues_pending on issues (pending);

-- Everyone who reported an issue: its reporter, and the reporters of the duplicates merged
-- into it. A resident reads the issues they are among the reporters of.
create table issue_reporters (
    street text not null,
    issue_id text not null,
    reporter text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, issue_id, reporter)
);
create index issue_reporters_by_reporter on issue_reporters (street, reporter, issue_id);

-- Each issue's timeline, numbered from 1.
create table issue_updates (
    street text not null,
    issue_id text not null,
    seq bigint not null,
    visibility text not null,
    action text not null,
    author text not null,
    state text not null,
    body text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, issue_id, seq)
);
