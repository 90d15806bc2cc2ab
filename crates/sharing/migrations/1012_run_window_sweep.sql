-- Windows that ended long ago are swept by their start time (see
-- access/storage/budgets.rs), so counters of anonymous sessions that never
-- come back do not pile up.
CREATE INDEX run_windows_by_start ON run_windows (window_start);
