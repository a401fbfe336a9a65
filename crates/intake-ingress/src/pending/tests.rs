//! The record log: what survives a reopen, a torn tail, compaction, the earlier layout; one sync for
//! concurrent records; one process per folder.

use std::time::Duration;

use super::*;

fn announce(id: &str) -> Announce {
    serde_json::from_value(serde_json::json!({
        "account": "000001",
        "rh_account": "000001",
        "org_id": "000001",
        "payload_id": id,
        "hash": "0".repeat(64),
        "content_type": "application/vnd.redhat.advisor.test+tgz",
        "b64_identity": "eyJpZGVudGl0eSI6IHt9fQ==",
        "category": "test",
        "metadata": {"display_name": id},
        "request_id": id,
        "principal": "000001",
        "service": "advisor",
        "size": 200,
        "url": format!("http://localhost/download/{id}"),
        "timestamp": "2026-12-03T10:00:00Z",
    }))
    .unwrap()
}

async fn state(pending: &Pending) -> Vec<(String, bool)> {
    let mut all: Vec<(String, bool)> = pending
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.request_id, e.announced))
        .collect();
    all.sort();
    all
}

fn owned(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(id, a)| ((*id).to_owned(), *a)).collect()
}

/// Drops `pending` and opens its folder again, as a restarted process would.
fn reopen(pending: Pending, dir: &std::path::Path) -> Pending {
    drop(pending);
    Pending::open(dir.to_path_buf()).unwrap()
}

#[tokio::test]
async fn records_and_their_state_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let pending = Pending::open(dir.path().to_path_buf()).unwrap();
    for id in ["a", "b", "c", "d"] {
        pending.record(&announce(id)).await.unwrap();
    }
    pending.announced("a").await.unwrap();
    pending.announced("b").await.unwrap();
    pending.forget("b").await;
    pending.forget("never-recorded").await;
    pending.announced("never-recorded").await.unwrap();
    let mut again = pending.read("d", false).await.unwrap();
    again.reannounced = 2;
    pending.rewrite(again).await.unwrap();
    assert_eq!(pending.backlog(), 3);
    assert!(pending.is_unannounced("c").await);
    assert!(!pending.is_unannounced("a").await);

    let pending = reopen(pending, dir.path());
    assert_eq!(
        state(&pending).await,
        owned(&[("a", true), ("c", false), ("d", true)])
    );
    assert_eq!(pending.backlog(), 3);
    assert_eq!(pending.read("d", true).await.unwrap().reannounced, 2);
    let c = pending.read("c", false).await.unwrap();
    assert_eq!(c.announce.metadata.unwrap()["display_name"], "c");
    // A record is read only in the state asked for.
    let wrong = pending.read("c", true).await.unwrap_err();
    assert_eq!(wrong.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(
        pending.read("b", true).await.unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
}

#[tokio::test]
async fn a_record_keeps_the_time_of_its_last_announce() {
    let dir = tempfile::tempdir().unwrap();
    let pending = Pending::open(dir.path().to_path_buf()).unwrap();
    let before = SystemTime::now() - Duration::from_millis(2);
    pending.record(&announce("t")).await.unwrap();
    let first = pending.list().await.unwrap()[0].modified;
    assert!(first >= before, "{first:?} {before:?}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Acknowledging the announce is not another announce.
    pending.announced("t").await.unwrap();
    assert_eq!(pending.list().await.unwrap()[0].modified, first);
    let record = pending.read("t", true).await.unwrap();
    pending.rewrite(record).await.unwrap();
    let later = pending.list().await.unwrap()[0].modified;
    assert!(later >= first + Duration::from_millis(20), "{later:?}");
    let pending = reopen(pending, dir.path());
    assert_eq!(pending.list().await.unwrap()[0].modified, later);
}

#[tokio::test]
async fn a_half_written_tail_is_cut_off_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let pending = Pending::open(dir.path().to_path_buf()).unwrap();
    for id in ["kept-1", "kept-2"] {
        pending.record(&announce(id)).await.unwrap();
    }
    drop(pending);
    let log = dir.path().join(log::log_name(0));
    let good = std::fs::metadata(&log).unwrap().len();
    // A crash in the middle of the next batch: a frame's first bytes only.
    let mut torn = Vec::new();
    log::encode(
        &log::Frame::Put {
            record: Record {
                announce: announce("torn"),
                reannounced: 0,
            },
            announced: false,
            at: 0,
        },
        &mut torn,
    )
    .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&log, &bytes).unwrap();

    let pending = Pending::open(dir.path().to_path_buf()).unwrap();
    assert_eq!(
        state(&pending).await,
        owned(&[("kept-1", false), ("kept-2", false)])
    );
    assert_eq!(std::fs::metadata(&log).unwrap().len(), good);
    // Writing goes on after the cut.
    pending.record(&announce("after")).await.unwrap();
    let pending = reopen(pending, dir.path());
    assert_eq!(pending.backlog(), 3);

    // A damaged frame (a flipped byte) ends the log there too.
    drop(pending);
    let mut bytes = std::fs::read(&log).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();
    let pending = Pending::open(dir.path().to_path_buf()).unwrap();
    assert_eq!(
        state(&pending).await,
        owned(&[("kept-1", false), ("kept-2", false)])
    );
}

#[tokio::test]
async fn compaction_keeps_exactly_the_live_records() {
    let dir = tempfile::tempdir().unwrap();
    let pending = Pending::open_compacting_above(dir.path().to_path_buf(), 64 << 10).unwrap();
    let log = dir.path().join(log::log_name(0));
    let (mut previous, mut shrank) = (0, 0);
    for round in 0..200 {
        let id = format!("p-{round}");
        pending.record(&announce(&id)).await.unwrap();
        pending.announced(&id).await.unwrap();
        if round % 10 != 0 {
            pending.forget(&id).await;
        }
        // Only a compaction makes the log shorter.
        let len = std::fs::metadata(&log).unwrap().len();
        if len < previous {
            shrank += 1;
        }
        previous = len;
    }
    assert!(shrank >= 1, "never compacted");
    assert!(previous <= 64 << 10, "{previous}");
    let expected: Vec<(String, bool)> = {
        let mut ids: Vec<(String, bool)> = (0..200)
            .step_by(10)
            .map(|r| (format!("p-{r}"), true))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(state(&pending).await, expected);
    for (id, _) in &expected {
        assert_eq!(
            pending.read(id, true).await.unwrap().announce.request_id,
            *id
        );
    }
    let pending = reopen(pending, dir.path());
    assert_eq!(state(&pending).await, expected);
    assert_eq!(pending.backlog(), 20);
}

#[tokio::test]
async fn opening_brings_in_the_one_file_per_record_layout() {
    let dir = tempfile::tempdir().unwrap();
    let json = |id: &str, reannounced: u32| {
        serde_json::to_vec(&Record {
            announce: announce(id),
            reannounced,
        })
        .unwrap()
    };
    std::fs::write(dir.path().join("a1.tmp"), b"{}").unwrap();
    std::fs::write(dir.path().join("a2.json"), json("a2", 1)).unwrap();
    std::fs::write(dir.path().join("a3.new"), json("a3", 0)).unwrap();
    // Both: the announced one is the later state.
    std::fs::write(dir.path().join("a4.new"), json("a4", 0)).unwrap();
    std::fs::write(dir.path().join("a4.json"), json("a4", 0)).unwrap();
    std::fs::write(dir.path().join("bad.json"), b"not json").unwrap();
    let pending = Pending::open(dir.path().to_path_buf()).unwrap();
    assert_eq!(
        state(&pending).await,
        owned(&[("a2", true), ("a3", false), ("a4", true)])
    );
    assert_eq!(pending.read("a2", true).await.unwrap().reannounced, 1);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["bad.json", "lock", "records.log"]);
    let pending = reopen(pending, dir.path());
    assert_eq!(pending.backlog(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_records_are_all_kept_and_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let pending = Pending::open(dir.path().to_path_buf()).unwrap();
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let pending = pending.clone();
            #[allow(
                clippy::disallowed_methods,
                reason = "a test's tasks, each awaited below"
            )]
            tokio::task::spawn(async move {
                let id = format!("c-{i}");
                pending.record(&announce(&id)).await.unwrap();
                pending.announced(&id).await.unwrap();
                if i % 2 == 0 {
                    pending.forget(&id).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(pending.backlog(), 200);
    let syncs = pending.book.syncs.load(Ordering::Relaxed);
    assert!(syncs < 400, "{syncs} syncs for 400 records");
    let pending = reopen(pending, dir.path());
    let all = state(&pending).await;
    assert_eq!(all.len(), 200);
    assert!(all.iter().all(|(id, announced)| *announced
        && id.trim_start_matches("c-").parse::<u32>().unwrap() % 2 == 1));
}

#[tokio::test]
async fn processes_sharing_a_folder_each_keep_a_log_and_the_next_open_takes_in_the_stopped_ones() {
    let dir = tempfile::tempdir().unwrap();
    // The lock is per open file: a second open here is another process to the first.
    let first = Pending::open(dir.path().to_path_buf()).unwrap();
    let second = Pending::open(dir.path().to_path_buf()).unwrap();
    first.record(&announce("of-first")).await.unwrap();
    second.record(&announce("of-second")).await.unwrap();
    second.announced("of-second").await.unwrap();
    // Each sees only what it received.
    assert_eq!(state(&first).await, owned(&[("of-first", false)]));
    assert_eq!(state(&second).await, owned(&[("of-second", true)]));
    assert!(dir.path().join(log::log_name(1)).exists());

    // The second stops; a third, opened while the first runs, takes its records over.
    drop(second);
    let third = Pending::open(dir.path().to_path_buf()).unwrap();
    assert_eq!(state(&third).await, owned(&[("of-second", true)]));
    assert_eq!(
        third
            .read("of-second", true)
            .await
            .unwrap()
            .announce
            .request_id,
        "of-second"
    );
    assert_eq!(state(&first).await, owned(&[("of-first", false)]));

    // Both stop; the next open has everything, in one log.
    drop(first);
    drop(third);
    let last = Pending::open(dir.path().to_path_buf()).unwrap();
    assert_eq!(
        state(&last).await,
        owned(&[("of-first", false), ("of-second", true)])
    );
    assert!(!dir.path().join(log::log_name(1)).exists());
}

#[tokio::test]
async fn a_mark_queued_without_waiting_is_applied_in_order_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let pending = Pending::open(dir.path().to_path_buf()).unwrap();
    for id in ["q", "r"] {
        pending.record(&announce(id)).await.unwrap();
    }
    pending.announced_later("q");
    // Any later change is applied after it.
    pending.forget("r").await;
    assert!(!pending.is_unannounced("q").await);
    pending.announced_later("never-recorded");
    pending.record(&announce("s")).await.unwrap();
    pending.announced_later("s");
    // Dropping the handle waits for the writer: what was queued is written.
    let pending = reopen(pending, dir.path());
    assert_eq!(state(&pending).await, owned(&[("q", true), ("s", true)]));
}
