//! Tests of the fakes' semantics (the worker's paths are tested in `engine/worker_tests.rs`).

use base64::Engine as _;
use serde_json::json;
use uuid::Uuid;

use crate::domain::{Job, JobStatus, QueueLane, StepMessage};
use crate::llm::{ChatCompletion, ChatRequest, Endpoint, LlmClient, LlmError};
use crate::ports::{
    BlobStore, Catalog, CatalogStore, CatalogWrite, ConnectionStore, Expect, JobQuery, JobQueue,
    JobStore, ListError, Record, RecordKind, Secrets, Topic, WriteError,
};

use super::*;
use crate::engine::notify::publish;
use crate::llm::ChatMessage;

fn job(organization: Option<&str>, created_at: &str, status: JobStatus) -> Job {
    let mut job = sample_job(status, created_at);
    job.organization_id = organization.map(str::to_string);
    job
}

fn record(kind: RecordKind, parent: Option<Uuid>, updated_at: &str) -> Record {
    let id = Uuid::new_v4();
    Record {
        kind,
        id,
        parent,
        body: json!({"id": id, "name": "x", "updated_at": updated_at}),
    }
}

#[tokio::test]
async fn create_refuses_an_existing_id_and_replace_checks_step_and_status() {
    let store = MemoryJobStore::default();
    let mut stored = job(None, "2026-01-01T00:00:00.000000Z", JobStatus::Queued);
    store.create(&stored).await.unwrap();
    let error = store.create(&stored).await.unwrap_err();
    assert_eq!(error.operation, "create job");

    stored.progress.step = 1;
    assert!(
        !store.replace(&stored, 1).await.unwrap(),
        "stored step is 0"
    );
    assert!(store.replace(&stored, 0).await.unwrap());
    assert_eq!(
        store.get(stored.id).await.unwrap().unwrap().progress.step,
        1
    );

    stored.status = JobStatus::Cancelled;
    assert!(
        store.replace(&stored, 1).await.unwrap(),
        "processing → cancelled"
    );
    stored.status = JobStatus::Processing;
    assert!(
        !store.replace(&stored, 1).await.unwrap(),
        "a terminal job never changes, even at the expected step"
    );
    assert_eq!(
        store.get(stored.id).await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );

    let missing = job(None, "2026-01-01T00:00:00.000000Z", JobStatus::Queued);
    assert!(!store.replace(&missing, 0).await.unwrap());
    assert!(store.get(missing.id).await.unwrap().is_none(), "no upsert");

    store.fail_next_replaces(1);
    let mut queued = job(None, "2026-01-02T00:00:00.000000Z", JobStatus::Queued);
    store.create(&queued).await.unwrap();
    queued.status = JobStatus::Processing;
    assert_eq!(
        store.replace(&queued, 0).await.unwrap_err().operation,
        "update job"
    );
    assert!(store.replace(&queued, 0).await.unwrap(), "one failure only");
}

#[tokio::test]
async fn replace_completed_checks_status_and_updated_at() {
    let store = MemoryJobStore::default();
    let t0 = "2026-01-01T00:00:00.000000Z";
    let t1 = "2026-01-01T00:00:01.000000Z";
    let mut done = job(None, t0, JobStatus::Completed);
    store.create(&done).await.unwrap();
    done.current_version = 2;
    done.updated_at = t1.into();
    assert!(
        !store.replace_completed(&done, t1).await.unwrap(),
        "stored updated_at is t0"
    );
    assert!(store.replace_completed(&done, t0).await.unwrap());
    assert_eq!(
        store.get(done.id).await.unwrap().unwrap().current_version,
        2
    );
    assert!(
        !store.replace_completed(&done, t0).await.unwrap(),
        "a second writer that read t0 is refused"
    );

    // Another writer between the read and the write: the condition sees its change.
    store.before_next_replace(|stored| stored.updated_at = "2026-01-01T00:00:02.000000Z".into());
    done.current_version = 3;
    assert!(!store.replace_completed(&done, t1).await.unwrap());
    assert_eq!(
        store.get(done.id).await.unwrap().unwrap().current_version,
        2
    );

    let running = job(None, t0, JobStatus::Processing);
    store.create(&running).await.unwrap();
    assert!(
        !store.replace_completed(&running, t0).await.unwrap(),
        "only completed jobs"
    );
    let missing = job(None, t0, JobStatus::Completed);
    assert!(!store.replace_completed(&missing, t0).await.unwrap());
    assert!(store.get(missing.id).await.unwrap().is_none(), "no upsert");

    store.fail_next_replaces(1);
    let stored = store.get(done.id).await.unwrap().unwrap();
    assert_eq!(
        store
            .replace_completed(&stored, &stored.updated_at)
            .await
            .unwrap_err()
            .operation,
        "update completed job"
    );
    assert!(store
        .replace_completed(&stored, &stored.updated_at)
        .await
        .unwrap());
}

#[tokio::test]
async fn delete_terminal_only_deletes_finished_jobs() {
    let store = MemoryJobStore::default();
    let running = job(None, "2026-01-01T00:00:00.000000Z", JobStatus::Processing);
    let done = job(None, "2026-01-01T00:00:00.000000Z", JobStatus::Completed);
    store.create(&running).await.unwrap();
    store.create(&done).await.unwrap();
    assert!(!store.delete_terminal(running.id).await.unwrap());
    assert!(store.delete_terminal(done.id).await.unwrap());
    assert!(
        !store.delete_terminal(done.id).await.unwrap(),
        "already gone"
    );
    assert_eq!(store.all(), vec![running]);
}

#[tokio::test]
async fn list_pages_newest_first_within_the_organization_with_filters() {
    let store = MemoryJobStore::default();
    let mut created = Vec::new();
    for day in 1..=5 {
        let status = if day % 2 == 0 {
            JobStatus::Failed
        } else {
            JobStatus::Queued
        };
        let job = job(
            Some("org"),
            &format!("2026-01-0{day}T00:00:00.000000Z"),
            status,
        );
        store.create(&job).await.unwrap();
        created.push(job);
    }
    let other = job(
        Some("other"),
        "2026-02-01T00:00:00.000000Z",
        JobStatus::Queued,
    );
    let global = job(None, "2026-02-01T00:00:00.000000Z", JobStatus::Queued);
    store.create(&other).await.unwrap();
    store.create(&global).await.unwrap();

    let mut query = JobQuery {
        organization_id: Some("org".into()),
        page_size: 2,
        ..JobQuery::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.list(&query).await.unwrap();
        pages += 1;
        seen.extend(page.jobs.iter().map(|job| job.id));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    let newest_first: Vec<Uuid> = created.iter().rev().map(|job| job.id).collect();
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3, "2 + 2 + 1");

    let no_org = store
        .list(&JobQuery {
            page_size: 10,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        no_org.jobs.iter().map(|job| job.id).collect::<Vec<_>>(),
        [global.id],
        "no organization lists only jobs without one"
    );

    // A filtered full page has a cursor even when nothing matching follows.
    let failed = JobQuery {
        organization_id: Some("org".into()),
        status: Some(JobStatus::Failed),
        page_size: 2,
        ..JobQuery::default()
    };
    let first = store.list(&failed).await.unwrap();
    assert_eq!(
        first.jobs.iter().map(|job| job.id).collect::<Vec<_>>(),
        [created[3].id, created[1].id]
    );
    let rest = store
        .list(&JobQuery {
            cursor: first.next_cursor,
            ..failed
        })
        .await
        .unwrap();
    assert!(rest.jobs.is_empty() && rest.next_cursor.is_none());

    let bad = store
        .list(&JobQuery {
            cursor: Some("not a cursor!".into()),
            page_size: 2,
            ..JobQuery::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(bad, ListError::InvalidCursor));

    // A well-formed cursor of another query (another organization, none, other filters)
    // is refused as a cursor, like the adapter does before DynamoDB sees it.
    let first_page = store
        .list(&JobQuery {
            organization_id: Some("org".into()),
            page_size: 2,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    let cursor = first_page.next_cursor.expect("a cursor");
    for other in [
        JobQuery {
            organization_id: Some("other".into()),
            ..JobQuery::default()
        },
        JobQuery::default(),
        JobQuery {
            organization_id: Some("org".into()),
            status: Some(JobStatus::Failed),
            ..JobQuery::default()
        },
    ] {
        let refused = store
            .list(&JobQuery {
                cursor: Some(cursor.clone()),
                page_size: 2,
                ..other.clone()
            })
            .await
            .unwrap_err();
        assert!(matches!(refused, ListError::InvalidCursor), "{other:?}");
    }
}

#[tokio::test]
async fn catalog_writes_are_all_or_nothing_with_claims_and_staleness() {
    let catalog = MemoryCatalog::default();
    let first = record(RecordKind::Provider, None, "t1");
    let owner = first.id;
    catalog
        .write(vec![
            CatalogWrite::Put {
                record: first.clone(),
                expect: Expect::New,
            },
            CatalogWrite::Claim {
                key: "provider-name:x".into(),
                owner,
            },
        ])
        .await
        .unwrap();
    assert_eq!(catalog.claim_owner("provider-name:x"), Some(owner));

    // Another owner's claim refuses the whole change: its put is not applied.
    let second = record(RecordKind::Provider, None, "t1");
    let taken = catalog
        .write(vec![
            CatalogWrite::Put {
                record: second.clone(),
                expect: Expect::New,
            },
            CatalogWrite::Claim {
                key: "provider-name:x".into(),
                owner: second.id,
            },
        ])
        .await
        .unwrap_err();
    assert!(matches!(taken, WriteError::Taken(key) if key == "provider-name:x"));
    assert!(catalog
        .record(RecordKind::Provider, second.id)
        .await
        .unwrap()
        .is_none());

    // The owner may claim its key again; a stale updated_at refuses, a fresh one passes.
    let mut update = first.clone();
    update.body["updated_at"] = json!("t2");
    let stale = catalog
        .write(vec![
            CatalogWrite::Claim {
                key: "provider-name:x".into(),
                owner,
            },
            CatalogWrite::Put {
                record: update.clone(),
                expect: Expect::UpdatedAt("t0".into()),
            },
        ])
        .await
        .unwrap_err();
    assert!(matches!(stale, WriteError::Stale));
    catalog
        .write(vec![
            CatalogWrite::Claim {
                key: "provider-name:x".into(),
                owner,
            },
            CatalogWrite::Put {
                record: update.clone(),
                expect: Expect::UpdatedAt("t1".into()),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        catalog.record(RecordKind::Provider, owner).await.unwrap(),
        Some(update.clone())
    );
    let again = catalog
        .write(vec![CatalogWrite::Put {
            record: update.clone(),
            expect: Expect::New,
        }])
        .await
        .unwrap_err();
    assert!(
        matches!(again, WriteError::Stale),
        "Expect::New on an existing record"
    );

    // Two writes on one item are refused like DynamoDB does; release frees the key.
    let twice = catalog
        .write(vec![
            CatalogWrite::Release {
                key: "provider-name:x".into(),
            },
            CatalogWrite::Claim {
                key: "provider-name:x".into(),
                owner: second.id,
            },
        ])
        .await
        .unwrap_err();
    assert!(matches!(twice, WriteError::Io(_)));
    catalog
        .write(vec![
            CatalogWrite::Delete {
                kind: RecordKind::Provider,
                id: owner,
                parent: None,
            },
            CatalogWrite::Release {
                key: "provider-name:x".into(),
            },
        ])
        .await
        .unwrap();
    assert_eq!(catalog.claim_owner("provider-name:x"), None);
    assert!(catalog
        .records(RecordKind::Provider)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn typed_reads_come_from_the_records_and_flavors_live_under_their_service() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let catalog = memory.catalog.as_ref();
    assert_eq!(
        catalog.service(seeded.service.id).await.unwrap(),
        Some(seeded.service.clone())
    );
    assert_eq!(
        catalog
            .flavor(seeded.service.id, seeded.iterative.id)
            .await
            .unwrap(),
        Some(seeded.iterative.clone())
    );
    assert_eq!(
        catalog
            .flavor(Uuid::new_v4(), seeded.iterative.id)
            .await
            .unwrap(),
        None,
        "not a flavor of that service"
    );
    let flavor_ids: Vec<Uuid> = catalog
        .flavors(seeded.service.id)
        .await
        .unwrap()
        .iter()
        .map(|flavor| flavor.id)
        .collect();
    let mut expected = vec![seeded.single_pass.id, seeded.iterative.id];
    expected.sort();
    assert_eq!(flavor_ids, expected, "in key order");

    let record = CatalogStore::record(catalog, RecordKind::Flavor, seeded.single_pass.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.parent, Some(seeded.service.id));
    assert_eq!(
        CatalogStore::records(catalog, RecordKind::Flavor)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        catalog.claim_owner(&format!("flavor-name:{}:iterative", seeded.service.id)),
        Some(seeded.iterative.id)
    );
    // A duplicate name is refused through the same claims as the catalog API.
    let mut duplicate = seeded.iterative.clone();
    duplicate.id = Uuid::new_v4();
    assert_eq!(memory.insert(&duplicate).await.unwrap_err().status(), 409);

    // Typed reads see record writes at once (one store behind both traits).
    let mut renamed = seeded.service.clone();
    renamed.name = "renamed".into();
    memory
        .catalog
        .write(vec![CatalogWrite::Put {
            record: Record {
                kind: RecordKind::Service,
                id: renamed.id,
                parent: None,
                body: serde_json::to_value(&renamed).unwrap(),
            },
            expect: Expect::UpdatedAt(seeded.service.updated_at.clone()),
        }])
        .await
        .unwrap();
    assert_eq!(
        catalog.service(renamed.id).await.unwrap().unwrap().name,
        "renamed"
    );
}

#[tokio::test]
async fn blobs_queue_and_secrets() {
    let blobs = MemoryBlobs::default();
    blobs
        .put("jobs/a/1", b"one".to_vec(), "text/plain")
        .await
        .unwrap();
    blobs.fail_next_puts_of("jobs/a/2", 1);
    blobs
        .put("jobs/b/1", b"x".to_vec(), "text/plain")
        .await
        .unwrap();
    assert!(blobs.put("jobs/a/2", b"two".to_vec(), "t").await.is_err());
    blobs
        .put("jobs/a/2", b"two".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(
        blobs.content_type("jobs/a/2").as_deref(),
        Some("application/json")
    );
    blobs
        .put("jobs/a/3", b"three".to_vec(), "text/plain")
        .await
        .unwrap();
    blobs.delete("jobs/a/3").await.unwrap();
    blobs.delete("jobs/a/3").await.unwrap();
    assert_eq!(
        blobs.get("jobs/a/3").await.unwrap(),
        None,
        "one object deleted"
    );
    assert_eq!(blobs.delete_prefix("jobs/a/").await.unwrap(), 2);
    assert_eq!(blobs.keys(), ["jobs/b/1"]);
    assert_eq!(blobs.get("jobs/a/1").await.unwrap(), None);
    blobs.fail_next_puts(2);
    assert!(blobs.put("jobs/b/1", b"y".to_vec(), "t").await.is_err());
    assert!(blobs.put("jobs/c/1", b"z".to_vec(), "t").await.is_err());
    blobs.put("jobs/c/1", b"z".to_vec(), "t").await.unwrap();
    assert_eq!(blobs.get("jobs/b/1").await.unwrap().unwrap(), b"x", "kept");

    let queue = MemoryQueue::default();
    let message = |step| StepMessage::new(Uuid::nil(), step, vec![]);
    queue.fail_next_sends(1);
    assert!(queue.send(&message(0), QueueLane::Bulk).await.is_err());
    queue.send(&message(0), QueueLane::Bulk).await.unwrap();
    queue.send(&message(1), QueueLane::Urgent).await.unwrap();
    assert_eq!(queue.sent().len(), 2);
    assert_eq!(
        queue.drain(),
        [
            (message(0), QueueLane::Bulk),
            (message(1), QueueLane::Urgent)
        ]
    );
    assert!(queue.sent().is_empty());

    let secrets = MemorySecrets::default();
    let ciphertext = secrets.encrypt("sk-1").await.unwrap();
    assert!(!ciphertext.contains("sk-1"));
    assert_eq!(secrets.decrypt(&ciphertext).await.unwrap(), "sk-1");
    let foreign = base64::engine::general_purpose::STANDARD.encode("sk-1");
    assert_eq!(
        secrets.decrypt(&foreign).await.unwrap_err().operation,
        "decrypt secret"
    );
    assert!(secrets.decrypt("%%%").await.is_err());
}

#[tokio::test]
async fn llm_answers_deterministically_and_follows_its_script() {
    let llm = MemoryLlm::default();
    let endpoint = Endpoint {
        base_url: "http://x".into(),
        api_key: None,
        provider_name: "p".into(),
    };
    let request = ChatRequest {
        model: "m".into(),
        messages: vec![
            ChatMessage::new("system", "be brief"),
            ChatMessage::new("user", "first line\nJohn : hello there\n"),
        ],
        temperature: 0.0,
        top_p: 1.0,
        max_tokens: 10,
        frequency_penalty: None,
        presence_penalty: None,
        stop: Vec::new(),
        extra: Default::default(),
    };
    let answer = llm.chat(&endpoint, &request).await.unwrap();
    assert_eq!(answer.content, "summary of 6 words: John : hello there");
    assert_eq!(answer.prompt_tokens, Some(8), "words of every message");
    assert_eq!(answer.completion_tokens, Some(8));
    assert_eq!(answer, MemoryLlm::answer_for(&request));

    let refused = LlmError::Status {
        status: 401,
        message: "no".into(),
        retry_after: None,
    };
    llm.fail_next(1, refused.clone());
    llm.respond_next(ChatCompletion {
        content: "scripted".into(),
        prompt_tokens: None,
        completion_tokens: None,
        finish_reason: None,
    });
    assert_eq!(llm.chat(&endpoint, &request).await.unwrap_err(), refused);
    assert_eq!(
        llm.chat(&endpoint, &request).await.unwrap().content,
        "scripted"
    );
    assert_eq!(llm.call_count(), 3);
    assert_eq!(llm.calls()[0].request, request);

    assert!(llm.models(&endpoint).await.unwrap().is_empty());
    llm.set_models(vec![json!({"id": "m"})]);
    assert_eq!(llm.models(&endpoint).await.unwrap(), [json!({"id": "m"})]);
}

#[tokio::test]
async fn connections_and_notifier_drop_gone_connections_on_publish() {
    let memory = MemoryGateway::new();
    let update = job(
        Some("org"),
        "2026-01-01T00:00:00.000000Z",
        JobStatus::Processing,
    );
    let connections = memory.connections.as_ref();
    connections
        .subscribe("a", &Topic::Job(update.id), Some("org"))
        .await
        .unwrap();
    connections
        .subscribe("a", &Topic::Organization("org".into()), Some("other"))
        .await
        .unwrap();
    connections
        .subscribe("b", &Topic::Organization("org".into()), None)
        .await
        .unwrap();
    assert_eq!(
        connections.organization_of("a").await.unwrap(),
        Some(Some("org".into())),
        "the first subscription's organization is kept"
    );
    assert_eq!(connections.organization_of("b").await.unwrap(), Some(None));
    assert_eq!(connections.organization_of("c").await.unwrap(), None);

    memory.notifier.mark_gone("b");
    let report = publish(&memory.realtime, &update, &json!({"type": "job_update"}))
        .await
        .unwrap();
    assert_eq!((report.sent, report.gone), (1, 1));
    let posts = memory.notifier.posts();
    assert_eq!(posts.len(), 1, "a once, though it follows both topics");
    assert_eq!(posts[0].0, "a");
    assert_eq!(posts[0].1, br#"{"type":"job_update"}"#);
    assert_eq!(connections.organization_of("b").await.unwrap(), None);
    assert_eq!(
        connections
            .subscribers(&Topic::Organization("org".into()))
            .await
            .unwrap(),
        ["a"]
    );
    connections
        .unsubscribe("a", &Topic::Job(update.id))
        .await
        .unwrap();
    assert!(connections
        .subscribers(&Topic::Job(update.id))
        .await
        .unwrap()
        .is_empty());
    assert!(connections.organization_of("a").await.unwrap().is_some());
}
