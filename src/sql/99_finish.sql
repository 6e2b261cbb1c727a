-- Last part of the install script.

-- Start this database's maintenance worker now rather than at the launcher's next round.
SELECT stream._wake_worker();
