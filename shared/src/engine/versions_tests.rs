//! Result versions on the in-memory ports ([`crate::memory`]).

use serde_json::{json, Value};

use super::*;
use crate::engine::worker::process_step;
use crate::memory::{sample_job, MemoryGateway};
use crate::ports::{BlobStore, JobStore};

const COMPLETED_AT: &str = "2026-01-01T00:01:00.000000Z";

/// A completed job whose output (version 1) is `output`.
async fn completed(memory: &MemoryGateway, output: &str) -> Job {
    let mut job = sample_job(JobStatus::Completed, "2026-01-01T00:00:00.000000Z");
    job.completed_at = Some(COMPLETED_AT.into());
    job.updated_at = COMPLETED_AT.into();
    memory.jobs.create(&job).await.unwrap();
    memory
        .blobs
        .put(&keys::result(job.id), output.as_bytes().to_vec(), TEXT)
        .await
        .unwrap();
    job
}

fn body(content: &str) -> Vec<u8> {
    json!({ "content": content }).to_string().into_bytes()
}

async fn edit(memory: &MemoryGateway, job: &Job, content: &str) -> EngineResult<Value> {
    edit_result(&memory.gateway, job.id, None, &body(content)).await
}

async fn stored(memory: &MemoryGateway, job: &Job) -> Job {
    memory.jobs.get(job.id).await.unwrap().expect("job exists")
}

async fn text(memory: &MemoryGateway, key: &str) -> Option<String> {
    memory
        .blobs
        .get(key)
        .await
        .unwrap()
        .map(|bytes| String::from_utf8(bytes).unwrap())
}

async fn numbers(memory: &MemoryGateway, job: &Job) -> Vec<u64> {
    list_versions(&memory.gateway, job.id, None)
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version_number"].as_u64().unwrap())
        .collect()
}

/// The objects under the job's `result/` prefix.
fn result_objects(memory: &MemoryGateway, job: &Job) -> Vec<String> {
    let prefix = format!("jobs/{}/result/", job.id);
    memory
        .blobs
        .keys()
        .into_iter()
        .filter(|key| key.starts_with(&prefix))
        .collect()
}

fn status_and_code(error: EngineError) -> (u16, &'static str, Option<String>) {
    let field = error.field().map(str::to_string);
    (error.status(), error.code(), field)
}

#[tokio::test]
async fn the_first_edit_stores_the_original_and_the_edit_and_makes_it_current() {
    let memory = MemoryGateway::new();
    let job = completed(&memory, "Résumé original").await;
    assert_eq!(current_result_key(&job), keys::result(job.id));

    let response = edit(&memory, &job, "Résumé édité ✓").await.unwrap();
    assert_eq!(response["id"], json!(job.id));
    assert_eq!(response["status"], "completed");
    assert_eq!(response["result"]["output"], "Résumé édité ✓");
    assert_eq!(response["current_version"], 2);
    assert!(response["last_edited_at"].as_str().unwrap().ends_with('Z'));

    let after = stored(&memory, &job).await;
    assert_eq!(after.current_version, 2);
    assert_eq!(
        after.last_edited_at.as_deref(),
        response["last_edited_at"].as_str()
    );
    assert!(
        after.updated_at > job.updated_at,
        "every change moves updated_at"
    );
    assert_eq!(after.versions.len(), 2);
    let (v1, v2) = (&after.versions[0], &after.versions[1]);
    assert_eq!(
        (
            v1.version_number,
            v1.created_by.as_str(),
            v1.created_at.as_str()
        ),
        (1, "system", COMPLETED_AT)
    );
    assert_eq!(v1.key, keys::result(job.id), "v1 is the job's own output");
    assert_eq!(v1.content_length, 15, "characters, not bytes");
    assert_eq!((v2.version_number, v2.created_by.as_str()), (2, "user"));
    assert_eq!(v2.content_length, 14);
    assert_ne!(v2.key, v1.key);
    assert_eq!(current_result_key(&after), v2.key);
    assert_eq!(
        text(&memory, &v2.key).await.as_deref(),
        Some("Résumé édité ✓")
    );
    assert_eq!(
        text(&memory, &keys::result(job.id)).await.as_deref(),
        Some("Résumé original"),
        "the original output is never overwritten"
    );

    let list = list_versions(&memory.gateway, job.id, None).await.unwrap();
    assert_eq!(
        list,
        json!([
            {"version_number": 1, "created_at": COMPLETED_AT, "created_by": "system", "content_length": 15},
            {"version_number": 2, "created_at": v2.created_at, "created_by": "user", "content_length": 14},
        ])
    );
    let one = get_version(&memory.gateway, job.id, None, 1).await.unwrap();
    assert_eq!(
        one,
        json!({"version_number": 1, "created_at": COMPLETED_AT, "created_by": "system",
               "content_length": 15, "content": "Résumé original"})
    );
    let two = get_version(&memory.gateway, job.id, None, 2).await.unwrap();
    assert_eq!(two["content"], "Résumé édité ✓");
    assert_eq!(two["created_by"], "user");

    let third = edit(&memory, &job, "third").await.unwrap();
    assert_eq!(third["current_version"], 3);
    assert_eq!(numbers(&memory, &job).await, [1, 2, 3]);
}

#[tokio::test]
async fn a_never_edited_result_has_an_implied_version_1() {
    let memory = MemoryGateway::new();
    let job = completed(&memory, "output").await;
    assert_eq!(
        list_versions(&memory.gateway, job.id, None).await.unwrap(),
        json!([{"version_number": 1, "created_at": COMPLETED_AT, "created_by": "system", "content_length": 6}])
    );
    assert_eq!(
        get_version(&memory.gateway, job.id, None, 1).await.unwrap()["content"],
        "output"
    );
    let missing = get_version(&memory.gateway, job.id, None, 2)
        .await
        .unwrap_err();
    assert_eq!(missing.to_string(), "version '2' not found");
    assert_eq!(
        status_and_code(missing),
        (404, "VERSION_NOT_FOUND", Some("version_number".into()))
    );
    for error in [
        restore_version(&memory.gateway, job.id, None, 1)
            .await
            .unwrap_err(),
        delete_version(&memory.gateway, job.id, None, 1)
            .await
            .unwrap_err(),
    ] {
        assert_eq!((error.status(), error.code()), (400, "CURRENT_VERSION"));
    }
    assert_eq!(
        stored(&memory, &job).await,
        job,
        "reads and refusals write nothing"
    );
}

#[tokio::test]
async fn restore_adds_a_version_with_the_old_content_and_refuses_the_current_one() {
    let memory = MemoryGateway::new();
    let job = completed(&memory, "original").await;
    edit(&memory, &job, "second").await.unwrap();
    edit(&memory, &job, "third").await.unwrap();

    let restored = restore_version(&memory.gateway, job.id, None, 1)
        .await
        .unwrap();
    assert_eq!(restored["current_version"], 4);
    assert_eq!(restored["result"]["output"], "original");
    let after = stored(&memory, &job).await;
    let v4 = after.versions.last().unwrap();
    assert_eq!((v4.version_number, v4.created_by.as_str()), (4, "user"));
    assert_ne!(v4.key, keys::result(job.id), "a restore is a new object");
    assert_eq!(text(&memory, &v4.key).await.as_deref(), Some("original"));
    assert_eq!(numbers(&memory, &job).await, [1, 2, 3, 4]);

    let current = restore_version(&memory.gateway, job.id, None, 4)
        .await
        .unwrap_err();
    assert_eq!((current.status(), current.code()), (400, "CURRENT_VERSION"));
    let unknown = restore_version(&memory.gateway, job.id, None, 9)
        .await
        .unwrap_err();
    assert_eq!(status_and_code(unknown).0, 404);

    let again = restore_version(&memory.gateway, job.id, None, 2)
        .await
        .unwrap();
    assert_eq!(again["current_version"], 5);
    assert_eq!(
        get_version(&memory.gateway, job.id, None, 5).await.unwrap()["content"],
        "second"
    );
}

#[tokio::test]
async fn delete_refuses_the_current_version_and_version_1() {
    let memory = MemoryGateway::new();
    let job = completed(&memory, "original").await;
    edit(&memory, &job, "second").await.unwrap();
    edit(&memory, &job, "third").await.unwrap();
    let v2_key = stored(&memory, &job).await.versions[1].key.clone();

    let current = delete_version(&memory.gateway, job.id, None, 3)
        .await
        .unwrap_err();
    assert_eq!((current.status(), current.code()), (400, "CURRENT_VERSION"));
    let original = delete_version(&memory.gateway, job.id, None, 1)
        .await
        .unwrap_err();
    assert_eq!(
        (original.status(), original.code()),
        (400, "ORIGINAL_VERSION")
    );
    let unknown = delete_version(&memory.gateway, job.id, None, 7)
        .await
        .unwrap_err();
    assert_eq!(
        status_and_code(unknown),
        (404, "VERSION_NOT_FOUND", Some("version_number".into()))
    );
    assert_eq!(
        numbers(&memory, &job).await,
        [1, 2, 3],
        "refusals change nothing"
    );

    let before = stored(&memory, &job).await;
    let deleted = delete_version(&memory.gateway, job.id, None, 2)
        .await
        .unwrap();
    assert_eq!(
        deleted,
        json!({"status": "success", "message": "Version 2 deleted", "version_number": 2})
    );
    assert_eq!(numbers(&memory, &job).await, [1, 3]);
    assert_eq!(text(&memory, &v2_key).await, None, "its object is deleted");
    assert!(text(&memory, &keys::result(job.id)).await.is_some());
    let after = stored(&memory, &job).await;
    assert_eq!(after.current_version, 3);
    assert!(after.updated_at > before.updated_at);
    assert_eq!(after.last_edited_at, before.last_edited_at, "not an edit");

    let gone = delete_version(&memory.gateway, job.id, None, 2)
        .await
        .unwrap_err();
    assert_eq!(gone.status(), 404);
    let gone = get_version(&memory.gateway, job.id, None, 2)
        .await
        .unwrap_err();
    assert_eq!(gone.status(), 404);
    let next = edit(&memory, &job, "fourth").await.unwrap();
    assert_eq!(next["current_version"], 4, "numbers are never reused");
    assert_eq!(numbers(&memory, &job).await, [1, 3, 4]);
}

#[tokio::test]
async fn only_completed_visible_jobs_have_versions() {
    let memory = MemoryGateway::new();
    for status in [
        JobStatus::Queued,
        JobStatus::Processing,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ] {
        let job = sample_job(status, "2026-01-01T00:00:00.000000Z");
        memory.jobs.create(&job).await.unwrap();
        let error = edit(&memory, &job, "x").await.unwrap_err();
        assert_eq!((error.status(), error.code()), (400, "JOB_NOT_COMPLETED"));
        assert!(
            matches!(&error, EngineError::Refused { subject, .. } if subject.contains(&("status", status.as_str().to_string()))),
            "{error:?}"
        );
        assert_eq!(
            list_versions(&memory.gateway, job.id, None)
                .await
                .unwrap_err()
                .code(),
            "JOB_NOT_COMPLETED"
        );
        assert_eq!(stored(&memory, &job).await, job);
    }

    let mut owned = sample_job(JobStatus::Completed, "2026-01-01T00:00:00.000000Z");
    owned.organization_id = Some("org-a".into());
    memory.jobs.create(&owned).await.unwrap();
    for organization in [None, Some("org-b")] {
        let error = edit_result(&memory.gateway, owned.id, organization, &body("x"))
            .await
            .unwrap_err();
        assert_eq!((error.status(), error.code()), (404, "JOB_NOT_FOUND"));
    }
    let response = edit_result(&memory.gateway, owned.id, Some("org-a"), &body("mine"))
        .await
        .unwrap();
    assert_eq!(response["current_version"], 2);
}

#[tokio::test]
async fn bodies_and_version_numbers_are_validated() {
    let memory = MemoryGateway::new();
    let job = completed(&memory, "original").await;
    let too_long = "é".repeat(MAX_CONTENT_CHARS + 1);
    for bad in [
        json!({}).to_string(),
        json!({"content": null}).to_string(),
        json!({"content": 5}).to_string(),
        json!({"content": ["a"]}).to_string(),
        json!({"content": ""}).to_string(),
        json!({ "content": too_long }).to_string(),
    ] {
        let error = edit_result(&memory.gateway, job.id, None, bad.as_bytes())
            .await
            .unwrap_err();
        assert_eq!(
            status_and_code(error),
            (422, "VALIDATION_ERROR", Some("content".into())),
            "{}",
            &bad[..bad.len().min(40)]
        );
    }
    for bad in ["", "not json", "[1]"] {
        let error = edit_result(&memory.gateway, job.id, None, bad.as_bytes())
            .await
            .unwrap_err();
        assert_eq!(error.status(), 422, "{bad}");
    }
    assert!(result_objects(&memory, &job).len() == 1, "nothing written");
    let at_limit = "é".repeat(MAX_CONTENT_CHARS);
    assert_eq!(
        parse_content(&body(&at_limit)).unwrap().chars().count(),
        MAX_CONTENT_CHARS
    );

    for bad in ["0", "-1", "abc", "", "1.5", "99999999999"] {
        assert_eq!(
            status_and_code(version_number(bad).unwrap_err()),
            (400, "INVALID_REQUEST", Some("version_number".into())),
            "{bad}"
        );
    }
    assert_eq!(version_number("3").unwrap(), 3);
}

#[tokio::test]
async fn retention_keeps_version_1_and_the_9_newest_and_deletes_pruned_objects() {
    let memory = MemoryGateway::new();
    let job = completed(&memory, "original").await;
    let mut keys_by_version = std::collections::BTreeMap::new();
    for edit_number in 2..=12 {
        edit(&memory, &job, &format!("edit {edit_number}"))
            .await
            .unwrap();
        let after = stored(&memory, &job).await;
        let newest = after.versions.last().unwrap();
        assert_eq!(newest.version_number, edit_number);
        keys_by_version.insert(edit_number, newest.key.clone());
        assert!(after.versions.len() <= MAX_VERSIONS);
    }
    let expected: Vec<u64> = std::iter::once(1).chain(4..=12).collect();
    assert_eq!(
        numbers(&memory, &job).await,
        expected,
        "11 edits: v1 + v4..v12"
    );
    let after = stored(&memory, &job).await;
    assert_eq!(after.current_version, 12);
    for pruned in [2, 3] {
        assert_eq!(
            text(&memory, &keys_by_version[&pruned]).await,
            None,
            "v{pruned} object deleted"
        );
        assert_eq!(
            get_version(&memory.gateway, job.id, None, pruned)
                .await
                .unwrap_err()
                .status(),
            404
        );
    }
    assert_eq!(
        text(&memory, &keys::result(job.id)).await.as_deref(),
        Some("original")
    );
    assert_eq!(
        result_objects(&memory, &job).len(),
        MAX_VERSIONS,
        "one object per kept version"
    );
    assert_eq!(
        get_version(&memory.gateway, job.id, None, 4).await.unwrap()["content"],
        "edit 4"
    );
}

#[tokio::test]
async fn of_two_concurrent_edits_the_second_gets_409_and_nothing_is_lost() {
    let memory = MemoryGateway::new();
    let job = completed(&memory, "original").await;

    // Edit A runs to completion: the state a concurrent writer will have stored.
    edit(&memory, &job, "edit A").await.unwrap();
    let after_a = stored(&memory, &job).await;
    let a_key = after_a.versions[1].key.clone();
    // Back to the state both read, then B writes with A's write landing between B's read
    // and B's conditional write.
    assert!(memory.jobs.delete_terminal(job.id).await.unwrap());
    memory.jobs.create(&job).await.unwrap();
    let landed = after_a.clone();
    memory
        .jobs
        .before_next_replace(move |stored| *stored = landed);

    let error = edit(&memory, &job, "edit B").await.unwrap_err();
    assert_eq!((error.status(), error.code()), (409, "RESULT_CHANGED"));
    assert!(error.to_string().contains("reload"), "{error}");
    assert_eq!(stored(&memory, &job).await, after_a, "A's edit is kept");
    assert_eq!(
        result_objects(&memory, &job),
        {
            let mut expected = vec![keys::result(job.id), a_key.clone()];
            expected.sort();
            expected
        },
        "B's object was deleted, A's kept"
    );

    // B retries on the state it reloads: a new version after A's.
    let retried = edit(&memory, &job, "edit B").await.unwrap();
    assert_eq!(retried["current_version"], 3);
    assert_eq!(numbers(&memory, &job).await, [1, 2, 3]);
    assert_eq!(
        get_version(&memory.gateway, job.id, None, 2).await.unwrap()["content"],
        "edit A"
    );
    assert_eq!(
        get_version(&memory.gateway, job.id, None, 3).await.unwrap()["content"],
        "edit B"
    );
}

#[tokio::test]
async fn a_concurrent_change_also_refuses_restore_and_delete() {
    let memory = MemoryGateway::new();
    let job = completed(&memory, "original").await;
    edit(&memory, &job, "second").await.unwrap();
    edit(&memory, &job, "third").await.unwrap();

    // Another change lands between each read and its conditional write.
    memory
        .jobs
        .before_next_replace(|stored| stored.updated_at = "2099-01-01T00:00:00.000000Z".into());
    let error = restore_version(&memory.gateway, job.id, None, 1)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "RESULT_CHANGED");
    assert_eq!(
        result_objects(&memory, &job).len(),
        3,
        "the restore's object was deleted"
    );

    memory
        .jobs
        .before_next_replace(|stored| stored.updated_at = "2099-01-02T00:00:00.000000Z".into());
    let error = delete_version(&memory.gateway, job.id, None, 2)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "RESULT_CHANGED");
    assert_eq!(numbers(&memory, &job).await, [1, 2, 3]);
    assert_eq!(result_objects(&memory, &job).len(), 3, "v2's object kept");

    // A failed write (maybe applied) keeps the new object.
    memory.jobs.fail_next_replaces(1);
    let error = edit(&memory, &job, "fourth").await.unwrap_err();
    assert_eq!(error.status(), 503);
    assert_eq!(result_objects(&memory, &job).len(), 4);
}

#[tokio::test]
async fn a_job_run_by_the_worker_can_be_edited() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let job = memory
        .submit(&seeded.single_pass, "John : hello.\nMarie : hi.")
        .await
        .unwrap();
    for _ in 0..20 {
        let sent = memory.queue.drain();
        if sent.is_empty() {
            break;
        }
        for (message, _) in sent {
            process_step(&memory.gateway, &message).await.unwrap();
        }
    }
    let done = stored(&memory, &job).await;
    assert_eq!(done.status, JobStatus::Completed);
    let output = text(&memory, &keys::result(job.id)).await.unwrap();

    let response = edit(&memory, &done, "edited").await.unwrap();
    assert_eq!(response["current_version"], 2);
    assert_eq!(response["result"]["output"], "edited");
    assert!(response["token_metrics"]["passes"].is_array());
    let versions = list_versions(&memory.gateway, job.id, None).await.unwrap();
    assert_eq!(versions[0]["created_at"], json!(done.completed_at));
    assert_eq!(versions[0]["content_length"], output.chars().count());
    assert_eq!(
        get_version(&memory.gateway, job.id, None, 1).await.unwrap()["content"],
        output
    );
}

#[test]
fn timestamps_always_move_forward() {
    let future = "2999-01-01T00:00:00.000000Z";
    assert_eq!(fresh_timestamp(future), "2999-01-01T00:00:00.000001Z");
    let past = "2000-01-01T00:00:00.000000Z";
    assert!(fresh_timestamp(past).as_str() > past);
}

#[test]
fn pruning_never_drops_version_1() {
    let version = |n: u32| ResultVersion {
        version_number: n,
        created_at: String::new(),
        created_by: BY_USER.into(),
        content_length: 0,
        key: format!("k{n}"),
    };
    let mut versions: Vec<ResultVersion> = (1..=12).map(version).collect();
    let pruned = prune(&mut versions);
    assert_eq!(
        pruned.iter().map(|v| v.version_number).collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(versions.len(), MAX_VERSIONS);
    assert_eq!(versions[0].version_number, 1);
    let mut few: Vec<ResultVersion> = (1..=3).map(version).collect();
    assert!(prune(&mut few).is_empty());
}
