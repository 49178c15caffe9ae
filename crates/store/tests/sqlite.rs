//! The shared conformance suite against the embedded SQLite backend, in memory and on disk.

mod in_memory {
    vellum_store::store_conformance_tests!(async {
        (vellum_store::SqliteStore::in_memory().unwrap(), ())
    });
}

mod on_disk {
    vellum_store::store_conformance_tests!(async {
        let dir = tempfile::tempdir().unwrap();
        let store = vellum_store::SqliteStore::open(&dir.path().join("server.db")).unwrap();
        (store, dir)
    });
}
