-- Needs (群众点单: a micro-wish, one-on-one help, an activity) and the places volunteers take in
-- them. `claimed` counts the active claims; it never passes `places`: a claim raises it only
-- where it is still below (one conditional update, atomic on both stores).
create table needs (
    street text not null,
    need_id text not null,
    -- MICRO_WISH, ONE_ON_ONE or ACTIVITY.
    kind text not null,
    -- OPEN, CLAIMED (every place taken), IN_PROGRESS, DONE, CONFIRMED, CANCELLED or EXPIRED.
    state text not null,
    community_id text not null,
    grid_id text not null,
    -- The household it is for (`streets/{street}/households/{household}`), or empty.
    household text not null,
    -- The resident it is for (`users/{user}`), and who placed it (the resident or a grid worker).
    resident text not null,
    placed_by text not null,
    places bigint not null,
    claimed bigint not null,
    start_time text not null,
    end_time text not null,
    version bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, need_id)
);
create index needs_by_state on needs (street, state, start_time);

create table claims (
    street text not null,
    need_id text not null,
    -- The volunteer (`users/{user}`).
    volunteer text not null,
    -- ACTIVE or RELEASED.
    state text not null,
    -- Not checked in by then, the claim is released and the place offered again.
    check_in_by text not null,
    -- When they checked in, or empty.
    checked_in_at text not null,
    -- Why it was released (`stale`, `withdrawn`), or empty.
    released_because text not null,
    -- The task done in the place: when the volunteer left, the minutes served (whole minutes,
    -- from check-in to check-out), and the two confirmations — the volunteer's and the
    -- resident's (or a grid worker's for them, `resident_confirmed_by`). Only with both are the
    -- minutes counted (in the month of `confirmed_at`) and the points earned
    -- (`points_movement`, the ledger's movement).
    checked_out_at text not null default '',
    minutes bigint not null default 0,
    volunteer_confirmed_at text not null default '',
    resident_confirmed_at text not null default '',
    resident_confirmed_by text not null default '',
    -- When the second confirmation came: the minutes count in that month.
    confirmed_at text not null default '',
    points_movement text not null default '',
    created_at text not null,
    updated_at text not null,
    primary key (street, need_id, volunteer)
);
create index claims_to_check_in on claims (state, checked_in_at, check_in_by);
create index claims_by_volunteer on claims (street, volunteer, confirmed_at);
