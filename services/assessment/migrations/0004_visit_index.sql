-- A household's visits in time order: what a month reads for each key household's gaps.
create index visit_facts_by_household on visit_facts (street, household, visit_time);
