-- The clean-up a failed or cancelled run still owes (core/machine.py CoreMachine.cleanup): the run number
-- while a clean-up is pending, NULL otherwise. The janitor re-sends the clean-up message of jobs whose
-- clean-up stays pending (a lost or dead-lettered message).
ALTER TABLE geoetl.jobs ADD COLUMN cleanup_run integer CHECK (cleanup_run >= 1);
CREATE INDEX jobs_cleanup_idx ON geoetl.jobs (updated_at) WHERE cleanup_run IS NOT NULL;
COMMENT ON COLUMN geoetl.jobs.cleanup_run IS 'run whose clean-up is pending (NULL: none)';
