"""Datasets of recorded responses (spec §10.2): the lookup and selection rules the
engine uses (`lookup`, pure), the SQLite file (`store`), its start-up download
(`download`), and `pyllmd dataset`, which builds one (`tool`, `card`)."""
