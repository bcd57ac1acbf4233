-- Facts: what the other services' events said, kept so that a month can be scored again at any
-- time without asking them. Each row records the event it came from (`event_id`); a fact that
-- a later event replaces keeps the one with the highest version, so events delivered twice or
-- out of order leave the same facts as events delivered once in order. Times are RFC 3339 text
-- in UTC (they sort as they compare).

-- Households as the grid service announced them (`grid.household.changed`): every version, so a
-- month is counted with the households as they were at its end.
create table household_facts (
    street text not null,
    household text not null,
    version bigint not null,
    community_id text not null,
    grid_id text not null,
    -- 1 for a key household.
    key_household bigint not null,
    visit_interval_days bigint not null,
    event_time text not null,
    event_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, household, version)
);
create index household_facts_by_time on household_facts (street, event_time);

-- The workers of each grid, every version (`grid.grid.assigned`).
create table assignment_facts (
    street text not null,
    community_id text not null,
    grid_id text not null,
    version bigint not null,
    -- The workers' user ids, sorted, joined by a comma.
    workers text not null,
    event_time text not null,
    event_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, community_id, grid_id, version)
);

-- Visits (`grid.visit.recorded`): a visit is recorded once.
create table visit_facts (
    street text not null,
    visit text not null,
    household text not null,
    community_id text not null,
    grid_id text not null,
    worker text not null,
    key_visit bigint not null,
    visit_time text not null,
    event_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, visit)
);
create index visit_facts_by_time on visit_facts (street, visit_time);

-- Monthly summaries (`grid.diary.submitted`): the latest submission of a worker's month.
create table diary_facts (
    street text not null,
    worker text not null,
    month text not null,
    days_without_record bigint not null,
    on_time bigint not null,
    submit_time text not null,
    event_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, worker, month)
);

-- Issues (`issues.issue.created`, `issues.issue.changed`): one row each, the creation's facts and
-- the handling as of the highest version seen.
create table issue_facts (
    street text not null,
    issue text not null,
    community_id text not null,
    grid_id text not null,
    create_time text not null,
    response_due_time text not null,
    resolution_due_time text not null,
    acknowledge_time text not null,
    resolve_time text not null,
    state text not null,
    -- The version of the handling kept (0 until a change arrives).
    version bigint not null,
    event_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, issue)
);
create index issue_facts_by_time on issue_facts (street, create_time);

-- Escalations (`issues.issue.escalated`): one per issue, level and deadline.
create table escalation_facts (
    street text not null,
    issue text not null,
    level text not null,
    deadline text not null,
    community_id text not null,
    grid_id text not null,
    event_time text not null,
    event_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, issue, level, deadline)
);

-- Residents' ratings of issues (`issues.issue.feedback_given`): the latest of each issue.
create table feedback_facts (
    street text not null,
    issue text not null,
    community_id text not null,
    grid_id text not null,
    rating bigint not null,
    event_time text not null,
    event_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, issue)
);

-- Volunteer needs (`volunteer.need.created`).
create table need_facts (
    street text not null,
    need text not null,
    community_id text not null,
    grid_id text not null,
    placed_by text not null,
    create_time text not null,
    event_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, need)
);

-- Volunteers' confirmed service (`volunteer.need.confirmed`).
create table service_facts (
    street text not null,
    need text not null,
    volunteer text not null,
    minutes bigint not null,
    confirm_time text not null,
    event_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, need, volunteer)
);
create index service_facts_by_time on service_facts (street, confirm_time);
