-- A need as the API gives it: its `Need` message (the columns of `needs` are what lists filter
-- on and what claims change).
alter table needs add column body blob not null default '';
