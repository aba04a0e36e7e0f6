//! The export function against the emulator and the mock LLM: document templates
//! (multipart upload with placeholders Word split across runs, listing by tenant,
//! download, defaults) and exports of a completed job to DOCX, PDF and HTML, with fields
//! extracted just in time once and cached.

use std::io::{Read, Write};

use gateway_core::engine::JsonResponse;
use gateway_test_support::{api_request_of_type, seeds, TestStack};
use mock_llm::FaultRule;
use uuid::Uuid;

const ORG: &str = "org-export";
const MULTIPART: &str = "multipart/form-data; boundary=XBOUNDARY";

/// A `.docx` whose body has `{{output}}` and `{{decisions: the decisions taken}}`, the
/// latter split over three runs with a proofing mark and a bookmark between them, and a
/// header with `{{service_name}}`.
fn split_run_template() -> Vec<u8> {
    let document = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><w:body>
<w:p><w:r><w:t>Minutes of {{job_date}}</w:t></w:r></w:p>
<w:p><w:r><w:t>{{output}}</w:t></w:r></w:p>
<w:p><w:r><w:t xml:space="preserve">Decisions: {{</w:t></w:r><w:proofErr w:type="spellStart"/><w:r><w:rPr><w:b/></w:rPr><w:t>decisions: the decisions</w:t></w:r><w:bookmarkStart w:id="0" w:name="x"/><w:bookmarkEnd w:id="0"/><w:r><w:t xml:space="preserve"> taken}}</w:t></w:r></w:p>
<w:sectPr><w:headerReference w:type="default" r:id="rIdHeader"/></w:sectPr>
</w:body></w:document>"#;
    let header = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:hdr xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:p><w:r><w:t>{{</w:t></w:r><w:r><w:t>service_name}}</w:t></w:r></w:p></w:hdr>"#;
    let content_types = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/><Override PartName="/word/header1.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.header+xml"/></Types>"#;
    let rels = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
    let document_rels = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rIdHeader" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/header" Target="header1.xml"/></Relationships>"#;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, text) in [
        ("[Content_Types].xml", content_types),
        ("_rels/.rels", rels),
        ("word/document.xml", document),
        ("word/_rels/document.xml.rels", document_rels),
        ("word/header1.xml", header),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// The text of every `w:t` of a part of a `.docx`.
fn docx_text(docx: &[u8], part: &str) -> String {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(docx)).expect("a zip");
    let mut xml = String::new();
    archive
        .by_name(part)
        .expect("part present")
        .read_to_string(&mut xml)
        .unwrap();
    let mut text = String::new();
    for piece in xml.split("<w:t").skip(1) {
        let body = piece.split_once('>').map_or("", |(_, rest)| rest);
        text.push_str(body.split("</w:t>").next().unwrap_or_default());
        text.push(' ');
    }
    text
}

fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--XBOUNDARY\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((file_name, bytes)) = file {
        body.extend_from_slice(
            format!("--XBOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XBOUNDARY--\r\n");
    body
}

/// Calls the export function: `resource` is the API Gateway resource, `path` the path.
#[allow(clippy::too_many_arguments)]
async fn call(
    stack: &TestStack,
    method: &str,
    resource: &str,
    path: &str,
    params: &[(&str, &str)],
    query: &[(&str, &str)],
    body: Option<&[u8]>,
    content_type: &str,
) -> JsonResponse {
    let request = api_request_of_type(method, resource, path, params, query, body, content_type);
    export::handle(&stack.gateway, request).await
}

async fn upload(stack: &TestStack, org: Option<&str>, name: &str, file: &[u8]) -> JsonResponse {
    let mut fields = vec![("name_fr", name)];
    if let Some(org) = org {
        fields.push(("organization_id", org));
    }
    let body = multipart(&fields, Some(("minutes.docx", file)));
    call(
        stack,
        "POST",
        "/api/v1/document-templates",
        "/api/v1/document-templates",
        &[],
        &[],
        Some(&body),
        MULTIPART,
    )
    .await
}

async fn template_action(
    stack: &TestStack,
    method: &str,
    id: &str,
    action: &str,
    query: &[(&str, &str)],
) -> JsonResponse {
    let (resource, path) = if action.is_empty() {
        (
            "/api/v1/document-templates/{id}".to_string(),
            format!("/api/v1/document-templates/{id}"),
        )
    } else {
        (
            "/api/v1/document-templates/{id}/{proxy+}".to_string(),
            format!("/api/v1/document-templates/{id}/{action}"),
        )
    };
    call(
        stack,
        method,
        &resource,
        &path,
        &[("id", id), ("proxy", action)],
        query,
        None,
        "application/json",
    )
    .await
}

async fn export(
    stack: &TestStack,
    job: Uuid,
    format: &str,
    query: &[(&str, &str)],
) -> JsonResponse {
    let id = job.to_string();
    let mut query = query.to_vec();
    query.push(("organization_id", ORG));
    call(
        stack,
        "GET",
        "/api/v1/jobs/{id}/export/{format}",
        &format!("/api/v1/jobs/{id}/export/{format}"),
        &[("id", &id), ("format", format)],
        &query,
        None,
        "application/json",
    )
    .await
}

async fn completed_job(stack: &TestStack) -> Uuid {
    let job = stack
        .submit(
            "single-pass",
            Some(ORG),
            "Ann : We approve the budget.\nBob : Érik présente le plan.".into(),
        )
        .await;
    stack.run_worker_steps(10).await;
    let stored = stack.gateway.jobs.get(job.id).await.unwrap().unwrap();
    assert_eq!(stored.status.as_str(), "completed", "{:?}", stored.error);
    job.id
}

#[tokio::test]
async fn templates_are_uploaded_checked_listed_by_tenant_and_guarded_as_defaults() {
    let stack = TestStack::start().await;
    let file = split_run_template();

    let refused = upload(&stack, Some(ORG), "Broken", b"not a zip at all").await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(
        refused.body["detail"][0]["loc"][1], "file",
        "{}",
        refused.body
    );

    let created = upload(&stack, Some(ORG), "Compte rendu", &file).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["scope"], "organization");
    let placeholders: Vec<&str> = created.body["placeholders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        placeholders,
        [
            "job_date",
            "output",
            "decisions: the decisions taken",
            "service_name"
        ],
        "found in the body, across runs, and in the header"
    );

    let described = template_action(
        &stack,
        "GET",
        &id,
        "placeholders",
        &[("organization_id", ORG)],
    )
    .await;
    assert_eq!(described.status, 200, "{}", described.body);
    let decisions = &described.body.as_array().unwrap()[2];
    assert_eq!(
        (
            decisions["name"].as_str(),
            decisions["description"].as_str(),
            decisions["is_standard"].as_bool()
        ),
        (Some("decisions"), Some("the decisions taken"), Some(false))
    );

    let downloaded =
        template_action(&stack, "GET", &id, "download", &[("organization_id", ORG)]).await;
    let file_response = downloaded.file.expect("a file");
    assert_eq!(file_response.bytes, file);
    assert_eq!(file_response.file_name, "minutes.docx");

    let list = |org: &'static str| {
        let stack = &stack;
        async move {
            let listed = call(
                stack,
                "GET",
                "/api/v1/document-templates",
                "/api/v1/document-templates",
                &[],
                &[("organization_id", org)],
                None,
                "application/json",
            )
            .await;
            assert_eq!(listed.status, 200, "{}", listed.body);
            listed
                .body
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(list(ORG).await.contains(&id));
    assert!(
        !list("org-other").await.contains(&id),
        "another organization never sees it"
    );
    let hidden = template_action(&stack, "GET", &id, "", &[("organization_id", "org-other")]).await;
    assert_eq!(
        (hidden.status, hidden.body["error_code"].as_str()),
        (404, Some("TEMPLATE_NOT_FOUND"))
    );

    // A system template: the operator makes it the seeded service's default and the
    // global default; neither can then be deleted.
    let system = upload(&stack, None, "Système", &file).await;
    assert_eq!(system.status, 201, "{}", system.body);
    let system_id = system.body["id"].as_str().unwrap().to_string();
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let by_org = template_action(
        &stack,
        "POST",
        &system_id,
        "set-global-default",
        &[("organization_id", ORG)],
    )
    .await;
    assert_eq!(by_org.status, 403, "{}", by_org.body);
    let org_template_global = template_action(&stack, "POST", &id, "set-global-default", &[]).await;
    assert_eq!(
        org_template_global.status, 400,
        "{}",
        org_template_global.body
    );
    let global = template_action(&stack, "POST", &system_id, "set-global-default", &[]).await;
    assert_eq!(global.status, 204, "{}", global.body);
    let in_use = template_action(&stack, "DELETE", &system_id, "", &[]).await;
    assert_eq!(in_use.status, 409, "{}", in_use.body);

    let default = template_action(
        &stack,
        "POST",
        &id,
        "set-default",
        &[("service_id", &service)],
    )
    .await;
    assert_eq!(
        default.status, 404,
        "the global service cannot see an organization's template: {}",
        default.body
    );
    let second = upload(&stack, None, "Second", &file).await;
    let second_id = second.body["id"].as_str().unwrap().to_string();
    let default = template_action(
        &stack,
        "POST",
        &second_id,
        "set-default",
        &[("service_id", &service)],
    )
    .await;
    assert_eq!(default.status, 204, "{}", default.body);
    let in_use = template_action(&stack, "DELETE", &second_id, "", &[]).await;
    assert_eq!(in_use.status, 409, "{}", in_use.body);
    assert!(
        in_use.body["detail"]
            .as_str()
            .unwrap()
            .contains("default of service"),
        "{}",
        in_use.body
    );

    let deleted = template_action(&stack, "DELETE", &id, "", &[("organization_id", ORG)]).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let gone = template_action(&stack, "GET", &id, "download", &[("organization_id", ORG)]).await;
    assert_eq!(gone.status, 404);
}

#[tokio::test]
async fn exports_fill_the_template_and_extract_missing_fields_once() {
    let stack = TestStack::start().await;
    let job = completed_job(&stack).await;
    let template = upload(&stack, Some(ORG), "Compte rendu", &split_run_template()).await;
    assert_eq!(template.status, 201, "{}", template.body);
    let template_id = template.body["id"].as_str().unwrap().to_string();

    let preview = call(
        &stack,
        "POST",
        "/api/v1/jobs/{id}/export-preview",
        &format!("/api/v1/jobs/{job}/export-preview"),
        &[("id", &job.to_string())],
        &[("organization_id", ORG), ("template_id", &template_id)],
        None,
        "application/json",
    )
    .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(
        preview.body["extraction_required"], true,
        "{}",
        preview.body
    );
    let statuses: Vec<(String, String)> = preview.body["placeholders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("decisions".into(), "extraction_required".into())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&("service_name".into(), "available".into())),
        "{statuses:?}"
    );

    stack.mock.clear_requests();
    stack.mock.push_fault(
        FaultRule::reply(r#"{"decisions": "Budget approved – Érik leads"}"#)
            .matching("pull out the requested pieces of information"),
    );
    let docx = export(
        &stack,
        job,
        "docx",
        &[("template_id", &template_id), ("timezone", "Europe/Paris")],
    )
    .await;
    assert_eq!(docx.status, 200, "{}", docx.body);
    let file = docx.file.expect("a file");
    assert!(
        file.file_name.ends_with(&format!("_{job}.docx")),
        "{}",
        file.file_name
    );
    let body = docx_text(&file.bytes, "word/document.xml");
    assert!(body.contains("Budget approved – Érik leads"), "{body}");
    assert!(!body.contains("{{"), "{body}");
    assert!(
        docx_text(&file.bytes, "word/header1.xml").contains("summarize"),
        "the service name in the header"
    );
    assert_eq!(stack.mock.requests().len(), 1, "one extraction call");

    let again = export(&stack, job, "docx", &[("template_id", &template_id)]).await;
    assert_eq!(again.status, 200);
    assert!(docx_text(&again.file.unwrap().bytes, "word/document.xml").contains("Érik leads"));
    assert_eq!(
        stack.mock.requests().len(),
        1,
        "the extraction is cached per template and version"
    );
    let stored = stack.gateway.jobs.get(job).await.unwrap().unwrap();
    assert_eq!(stored.usage.passes, 2, "the extraction pass is counted");

    let pdf = export(&stack, job, "pdf", &[]).await;
    let pdf = pdf.file.expect("a pdf");
    assert_eq!(pdf.content_type, "application/pdf");
    assert!(pdf.bytes.starts_with(b"%PDF"));
    let html = export(&stack, job, "html", &[]).await.file.expect("html");
    let page = String::from_utf8(html.bytes).unwrap();
    assert!(
        page.contains("<!doctype html>") || page.contains("<!DOCTYPE html>"),
        "{page}"
    );

    let by_url = export(&stack, job, "docx", &[("delivery", "url")]).await;
    assert_eq!(by_url.status, 200, "{}", by_url.body);
    let url = by_url.body["url"].as_str().expect("a url");
    let fetched = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert!(fetched.starts_with(b"PK"), "the stored export");

    for (query, status, code) in [
        (vec![("timezone", "Mars/Olympus")], 400, "INVALID_REQUEST"),
        (vec![("template_id", "not-a-uuid")], 400, "INVALID_REQUEST"),
        (vec![("version_number", "7")], 404, "VERSION_NOT_FOUND"),
        (vec![("delivery", "fax")], 400, "INVALID_REQUEST"),
    ] {
        let refused = export(&stack, job, "docx", &query).await;
        assert_eq!(
            (refused.status, refused.body["error_code"].as_str()),
            (status, Some(code)),
            "{query:?}: {}",
            refused.body
        );
    }
    let unknown = Uuid::new_v4().to_string();
    let refused = export(&stack, job, "docx", &[("template_id", &unknown)]).await;
    assert_eq!(
        (refused.status, refused.body["error_code"].as_str()),
        (404, Some("TEMPLATE_NOT_FOUND"))
    );
    let refused = export(&stack, job, "odt", &[]).await;
    assert_eq!(
        (refused.status, refused.body["field"].as_str()),
        (400, Some("format"))
    );

    let pending = stack
        .submit("single-pass", Some(ORG), "Ann : not yet.".into())
        .await;
    let refused = export(&stack, pending.id, "pdf", &[]).await;
    assert_eq!(
        (refused.status, refused.body["error_code"].as_str()),
        (400, Some("JOB_NOT_COMPLETED"))
    );
}

#[tokio::test]
async fn a_failed_extraction_never_blocks_the_export() {
    let stack = TestStack::start().await;
    let job = completed_job(&stack).await;
    let template = upload(&stack, Some(ORG), "Compte rendu", &split_run_template()).await;
    let template_id = template.body["id"].as_str().unwrap().to_string();
    stack.mock.push_fault(
        FaultRule::status(400)
            .times(10)
            .matching("pull out the requested pieces"),
    );
    let docx = export(&stack, job, "docx", &[("template_id", &template_id)]).await;
    assert_eq!(docx.status, 200, "{}", docx.body);
    let body = docx_text(&docx.file.unwrap().bytes, "word/document.xml");
    assert!(body.contains("Decisions:"), "{body}");
    assert!(!body.contains("{{"), "{body}");
}

#[tokio::test]
async fn sample_events_decode_and_are_answered() {
    let stack = TestStack::start().await;
    for (name, status) in [
        ("export-docx", 404),
        ("export-preview", 404),
        ("export-templates-list", 200),
    ] {
        let text = std::fs::read_to_string(
            gateway_test_support::repo_root().join(format!("events/{name}.json")),
        )
        .unwrap();
        let request = lambda_http::request::from_str(&text)
            .unwrap_or_else(|error| panic!("events/{name}.json: {error}"));
        let response = export::handle(&stack.gateway, request).await;
        assert_eq!(response.status, status, "{name}: {}", response.body);
    }
}
