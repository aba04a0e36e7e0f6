use serde_json::json;

use super::*;
use crate::engine::catalog::{flavors, models};
use crate::memory::MemoryGateway;

const WORD_LEVEL: &[u8] = include_bytes!("../../../../tests/fixtures/tokenizer-word-level.json");

async fn store(memory: &MemoryGateway, repo: &str) {
    memory
        .gateway
        .blobs
        .put(
            &keys::tokenizer(repo),
            WORD_LEVEL.to_vec(),
            "application/json",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn tokenizers_load_from_the_store_and_a_missing_one_falls_back_visibly() {
    let memory = MemoryGateway::new();
    let gateway = &memory.gateway;
    assert_eq!(
        load_counter(gateway, "o200k_base").await.unwrap().name(),
        "o200k_base"
    );
    let missing = load_counter(gateway, "acme/missing-tokenizer")
        .await
        .unwrap_err();
    assert!(matches!(missing, Unavailable::Tokenizer(_)), "{missing}");
    let fallback = counter_or_default(gateway, "acme/missing-tokenizer").await;
    assert_eq!(
        fallback.name(),
        "cl100k_base",
        "the name recorded is the one counted with"
    );

    store(&memory, "acme/stored-tokenizer").await;
    let counter = load_counter(gateway, "acme/stored-tokenizer")
        .await
        .unwrap();
    assert_eq!(counter.name(), "acme/stored-tokenizer");
    assert_eq!(counter.count("Jean : Bonjour supercalifragilistic"), 4);
    assert!(is_repo_id("meta-llama/Llama-3.1-8B-Instruct"));
    for bad in ["no-slash", "a/b/c", "../x", "a/..", "/x", "a/", "a b/c"] {
        assert!(!is_repo_id(bad), "{bad}");
    }
}

#[tokio::test]
async fn flavors_and_models_naming_an_unavailable_tokenizer_are_refused_and_jobs_record_theirs() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let gateway = &memory.gateway;
    let body = |tokenizer: &str| {
        json!({
            "name": format!("counted-{}", tokenizer.len()), "model_id": seeded.model.id,
            "temperature": 0.2, "processing_mode": "single_pass",
            "prompt_user_content": "Summarise: {}", "tokenizer_override": tokenizer,
        })
        .to_string()
        .into_bytes()
    };
    let refused = flavors::create_flavor(
        gateway,
        &Scope::default(),
        seeded.service.id,
        &body("acme/flavor-tok"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (refused.status(), refused.field()),
        (422, Some("tokenizer_override")),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("infra/tokenizer.sh"),
        "{refused}"
    );

    let model = json!({
        "provider_id": seeded.provider.id, "model_name": "Llama", "model_identifier": "llama-3",
        "context_length": 8192, "max_generation_length": 1024, "tokenizer_name": "acme/model-tok",
    });
    let refused = models::create(
        gateway,
        &Scope::default(),
        None,
        model.to_string().as_bytes(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (refused.status(), refused.field()),
        (422, Some("tokenizer_name"))
    );

    store(&memory, "acme/flavor-tok").await;
    let created = flavors::create_flavor(
        gateway,
        &Scope::default(),
        seeded.service.id,
        &body("acme/flavor-tok"),
    )
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let flavor: Flavor = serde_json::from_value(created.body.clone()).unwrap();
    let job = memory
        .submit(&flavor, "Jean : Bonjour supercalifragilistic")
        .await
        .unwrap();
    assert_eq!(
        job.settings.tokenizer, "acme/flavor-tok",
        "the job records its tokenizer"
    );
    assert_eq!(job.input_tokens, 4, "counted with the stored tokenizer");
}

#[tokio::test]
async fn tokenizers_are_listed_and_deleted_only_when_unused_and_by_the_operator() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let gateway = &memory.gateway;
    store(&memory, "acme/listed-tok").await;
    let listed = list_tokenizers(gateway).await.unwrap();
    let ids: Vec<&str> = listed.body["tokenizers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cl100k_base", "o200k_base", "acme--listed-tok"]);
    assert_eq!(
        listed.body["tokenizers"][2]["source_repo"],
        "acme/listed-tok"
    );
    assert_eq!(listed.body["total_size_bytes"], WORD_LEVEL.len());

    let mut flavor = seeded.single_pass.clone();
    flavor.tokenizer_override = Some("acme/listed-tok".into());
    crate::engine::catalog::entity::commit(
        memory.catalog.as_ref(),
        crate::engine::catalog::entity::update_writes(&seeded.single_pass, &flavor).unwrap(),
        &[],
    )
    .await
    .unwrap();
    let in_use = delete_tokenizer(gateway, &Scope::default(), "acme--listed-tok")
        .await
        .unwrap_err();
    assert_eq!(in_use.status(), 409, "{in_use}");
    let by_org = delete_tokenizer(gateway, &Scope::new(Some("org-a")), "acme--listed-tok")
        .await
        .unwrap_err();
    assert_eq!(by_org.status(), 403);
    let builtin = delete_tokenizer(gateway, &Scope::default(), "cl100k_base")
        .await
        .unwrap_err();
    assert_eq!(builtin.status(), 403);
    let unknown = delete_tokenizer(gateway, &Scope::default(), "acme--nothing")
        .await
        .unwrap_err();
    assert_eq!((unknown.status(), unknown.code()), (404, "NOT_FOUND"));

    let mut unused = flavor.clone();
    unused.tokenizer_override = None;
    crate::engine::catalog::entity::commit(
        memory.catalog.as_ref(),
        crate::engine::catalog::entity::update_writes(&flavor, &unused).unwrap(),
        &[],
    )
    .await
    .unwrap();
    load_counter(gateway, "acme/listed-tok").await.unwrap();
    let deleted = delete_tokenizer(gateway, &Scope::default(), "acme/listed-tok")
        .await
        .unwrap();
    assert_eq!(
        deleted.body,
        json!({"deleted": "acme/listed-tok", "freed_bytes": WORD_LEVEL.len()})
    );
    assert!(gateway
        .blobs
        .get(&keys::tokenizer("acme/listed-tok"))
        .await
        .unwrap()
        .is_none());
    let gone = check_available(gateway, "tokenizer_override", Some("acme/listed-tok")).await;
    assert_eq!(
        gone.unwrap_err().status(),
        422,
        "deleted: refused even though this process loaded it"
    );

    let preloaded = preload(gateway, &Scope::default(), seeded.model.id)
        .await
        .unwrap();
    assert_eq!(preloaded.body["tokenizer_id"], "cl100k_base");
    assert_eq!(preloaded.body["tokenizer_type"], "tiktoken");
}
