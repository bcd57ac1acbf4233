//! The checklist of docs/adding-a-service.md, enforced: every registered service has its proto
//! package, names gRPC services that package declares, reads its own configuration section, has
//! its deploy directory listed in the split deployment (a Deployment and a headless Service that
//! the directory's address template reaches), and every civic gRPC service and event topic
//! belongs to a registered service. Forgetting a step fails here.

use std::path::Path;

use civic::MODULES;
use prost_reflect::DescriptorPool;

fn pool() -> DescriptorPool {
    DescriptorPool::decode(civic_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_service_has_its_proto_package_and_serves_what_it_declares() {
    let pool = pool();
    for module in MODULES {
        let name = module.name();
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}: a service's name is lowercase letters and _ (a schema, a target, a section)"
        );
        let package = format!("civic.{name}.v1");
        assert!(pool.files().any(|f| f.package_name() == package), "{name}: no proto package {package}");
        assert!(!module.grpc_services().is_empty(), "{name}: serves no gRPC service");
        for grpc in module.grpc_services() {
            let service =
                pool.get_service_by_name(grpc).unwrap_or_else(|| panic!("{name}: {grpc} is not in the protos"));
            assert_eq!(service.package_name(), package, "{name}: {grpc} belongs to another package");
        }
    }
}

#[test]
fn every_civic_grpc_service_is_served_by_a_registered_service() {
    let served: Vec<&str> = MODULES.iter().flat_map(|m| m.grpc_services().iter().copied()).collect();
    for service in pool().services().filter(|s| s.full_name().starts_with("civic.")) {
        assert!(
            served.contains(&service.full_name()),
            "{} is declared but no registered service serves it",
            service.full_name()
        );
    }
}

#[test]
fn every_event_topic_is_named_after_a_registered_service() {
    let pool = pool();
    let option = pool.get_extension_by_name("civic.api.v1.event_topic").expect("the event_topic option");
    for message in pool.all_messages() {
        if !message.options().has_extension(&option) {
            continue;
        }
        let topic = message.options().get_extension(&option).as_str().map(str::to_owned).unwrap_or_default();
        let producer = topic.split('.').next().unwrap_or_default();
        let module = MODULES.iter().find(|m| m.name() == producer);
        assert!(module.is_some(), "{}: topic {topic} names no registered service", message.full_name());
        assert!(
            message.package_name() == format!("civic.{producer}.v1"),
            "{}: an event lives in its producer's package",
            message.full_name()
        );
    }
}

#[test]
fn every_service_reads_its_own_section_with_defaults() {
    let config = civic_kit::config::Config::default();
    for module in MODULES {
        module.settings(&config.section(module.name())).unwrap_or_else(|e| panic!("{}: {e}", module.name()));
    }
}

#[test]
fn every_service_has_a_deploy_directory_in_the_split_deployment() {
    let split = std::fs::read_to_string(root().join("deploy/components/split/kustomization.yaml"))
        .expect("the split component");
    for module in MODULES {
        let name = module.name();
        let dir = root().join("deploy/services").join(name).join("kustomization.yaml");
        let text = std::fs::read_to_string(&dir).unwrap_or_else(|_| panic!("{name}: no {}", dir.display()));
        assert!(text.contains(&format!("--target={name}")), "{name}: its deployment runs another target");
        assert!(text.contains(&format!("nameSuffix: -{name}")), "{name}: its objects are not named civic-{name}");
        let listed = split.lines().any(|l| l.trim() == format!("- ../../services/{name}"));
        assert!(listed, "{name}: not listed in deploy/components/split");
    }
}

/// The split deployment as kustomize renders it, when kubectl is on this machine (CI has it).
#[test]
fn the_rendered_split_deployment_runs_every_service_where_the_directory_looks() {
    let kubectl = std::env::var_os("CIVIC_KUBECTL").unwrap_or_else(|| "/usr/bin/kubectl".into());
    if !Path::new(&kubectl).is_file() {
        eprintln!(
            "skipped: no kubectl at {}; the files are checked by every_service_has_a_deploy_directory_in_the_split_deployment",
            Path::new(&kubectl).display()
        );
        return;
    }
    let output = std::process::Command::new(&kubectl)
        .args(["kustomize"])
        .arg(root().join("deploy/overlays/production"))
        .output()
        .expect("run kubectl kustomize");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rendered = String::from_utf8_lossy(&output.stdout);
    let documents: Vec<&str> = rendered.split("\n---\n").collect();
    let find = |kind: &str, name: &str| {
        documents.iter().find(|d| d.contains(&format!("kind: {kind}\n")) && d.contains(&format!("\n  name: {name}\n")))
    };
    // The address every process uses for a service it does not run, from the manifests.
    let template = rendered
        .lines()
        .skip_while(|l| !l.contains("CIVIC_DIRECTORY__ADDRESS_TEMPLATE"))
        .nth(1)
        .and_then(|l| l.trim().strip_prefix("value: "))
        .expect("the directory's address template")
        .trim_matches('"')
        .to_owned();
    let directory = civic_kit::config::DirectorySettings { address_template: template, ..Default::default() };
    for module in MODULES {
        let name = module.name();
        let deployment =
            find("Deployment", &format!("civic-{name}")).unwrap_or_else(|| panic!("{name}: no Deployment"));
        assert!(deployment.contains(&format!("--target={name}")), "{name}: the Deployment runs another target");
        let service = find("Service", &format!("civic-{name}")).unwrap_or_else(|| panic!("{name}: no Service"));
        assert!(service.contains("clusterIP: None"), "{name}: the Service is not headless");
        assert!(
            service.contains(&format!("app.kubernetes.io/component: {name}")),
            "{name}: the Service selects other pods too"
        );
        let urls = directory.urls(name).expect("an address");
        assert_eq!(urls, [format!("http://civic-{name}:50051")], "{name}: the directory looks elsewhere");
        assert!(deployment.contains("app.kubernetes.io/part-of: civic"), "{name}: its pods may not call the others");
        assert!(deployment.contains("CIVIC_AUTH__JWKS_URL"), "{name}: no identity provider");
    }
    let policy = find("NetworkPolicy", "civic-services").expect("the services' network policy");
    assert!(policy.contains("app.kubernetes.io/name: civic\n"), "it covers every service's pods");
    assert!(find("Deployment", "civic").is_none(), "the all-in-one Deployment is gone in split mode");
}

#[test]
fn the_example_configuration_loads_with_every_services_section() {
    // The example, and the file the Kubernetes manifests mount as the ConfigMap `civic-config`.
    for path in ["deploy/examples/civic.toml", "deploy/base/civic.toml"] {
        let file = root().join(path);
        let config = civic_kit::config::Config::load_from(
            Some(&file),
            &Default::default(),
            &civic::service_names(MODULES),
            figment::providers::Env::prefixed("CIVIC_UNSET_IN_THIS_TEST_"),
        )
        .unwrap_or_else(|e| panic!("{path} does not load: {e}"));
        civic::check_sections(&config, MODULES).unwrap_or_else(|e| panic!("{path}: a section is not valid: {e}"));
    }
}
