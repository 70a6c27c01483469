//! The throwaway PostgreSQL cluster: it starts on loopback, holds several databases,
//! keeps committed data across an immediate stop and a start on the same port, and
//! leaves nothing behind when dropped.
#![allow(clippy::unwrap_used)]

use volact_testkit::postgres::TestPostgres;

#[test]
fn a_cluster_keeps_committed_data_across_stop_and_start_and_is_removed_on_drop() {
    let Some(pg) = TestPostgres::start("a_cluster_keeps_committed_data").unwrap() else {
        return;
    };
    let a = pg.create_database().unwrap();
    let b = pg.create_database().unwrap();
    assert_ne!(a, b);
    pg.query(&a, "CREATE TABLE t (n int); INSERT INTO t VALUES (7)")
        .unwrap();
    // The other database is separate.
    assert!(pg.query(&b, "SELECT n FROM t").is_err());
    assert!(pg.accepts());
    let port = pg.port;

    pg.stop().unwrap();
    assert!(!pg.accepts(), "stopped, yet something answers on {port}");
    assert!(pg.query(&a, "SELECT 1").is_err());

    pg.start_again().unwrap();
    assert_eq!(pg.port, port);
    assert!(pg.accepts());
    assert_eq!(pg.query(&a, "SELECT n FROM t").unwrap().trim(), "7");
    // Only loopback is listened on.
    let listen = pg.query(&a, "SHOW listen_addresses").unwrap();
    assert_eq!(listen.trim(), "127.0.0.1");

    let dir = pg.dir().to_path_buf();
    assert!(dir.join("data").is_dir());
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server outlived its value"
    );
}

#[test]
fn the_shared_cluster_is_one_cluster() {
    let Some(first) = TestPostgres::shared("the_shared_cluster_is_one_cluster").unwrap() else {
        return;
    };
    let second = TestPostgres::shared("the_shared_cluster_is_one_cluster")
        .unwrap()
        .unwrap();
    assert_eq!(first.port, second.port);
    let db = second.create_database().unwrap();
    assert_eq!(first.query(&db, "SELECT 1 + 1").unwrap().trim(), "2");
}
