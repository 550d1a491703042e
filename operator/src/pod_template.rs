//! How a job's `podTemplate` and the pod the operator builds combine. Pure: the
//! operator's pod comes in, the merged pod and what was refused come out.
//!
//! The template is the base; the operator's settings go over it:
//! - the container named [`CONTAINER`] is the job's: its image, command and
//!   arguments are the operator's; its environment, ports and volume mounts are
//!   the operator's followed by the template's; its security context is the
//!   operator's with the template's fields over it; everything else (probes,
//!   lifecycle, resources, ...) is the template's; capabilities dropped by
//!   either stay dropped. Other containers (sidecars, init containers) are kept
//!   as written, after the runtime container: in a namespace enforcing Pod
//!   Security "restricted" they must say so themselves (no privilege
//!   escalation, all capabilities dropped), as the operator cannot know what
//!   they need.
//! - volumes are the operator's followed by the template's; a template volume
//!   named [`WORK_VOLUME`] replaces the operator's work folder (an `emptyDir`),
//!   e.g. with an `ephemeral` volume for RocksDB; the pod's security
//!   context is the operator's with the template's fields over it; everything else
//!   (affinity, tolerations, topology spread, priority, DNS, ...) is the template's.
//! - the shorthands (`labels`, `annotations`, `env`, `resources`, `nodeSelector`,
//!   `tolerations`, `serviceAccountName`, `imagePullSecrets`) add to the same
//!   fields of `metadata` and `spec`.
//!
//! What would break the job is refused rather than merged: a value the operator
//! owns (the runtime's image, command, arguments, `STROM_*` and the other
//! variables it sets, also through an `envFrom` prefix, its ports, also on
//! another container, its volumes' names and mount paths, the pods' host names,
//! a restart policy other than `Always`, a second container named
//! [`CONTAINER`]), or a setting given twice
//! (`resources` as a shorthand and on the container, two service accounts). Each
//! refusal names the field; the merged pod leaves the refused value out, but
//! [`crate::decide`] deploys nothing while there is one.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Capabilities, Container, PodTemplateSpec, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use strom_crds::PodTemplate;

use crate::resources::{CONTAINER, WORK_VOLUME};

/// The one `STROM_*` variable a template may set: the runtime's log filter.
const LOG_FILTER_VARIABLE: &str = "STROM_LOG";

/// The merged pod, and why the template cannot be used as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The operator's pod with the template merged in, refused values left out.
    pub pod: PodTemplateSpec,
    /// One message per refused value, naming the field; empty when none was.
    pub refused: Vec<String>,
}

/// Merges `template` into `ours`, the pod the operator builds for the job: one
/// container named [`CONTAINER`], its volumes and security context.
pub fn merge(template: Option<&PodTemplate>, ours: PodTemplateSpec) -> Merged {
    let Some(template) = template else {
        return Merged {
            pod: ours,
            refused: Vec::new(),
        };
    };
    let mut refused = Vec::new();
    let our_meta = ours.metadata.unwrap_or_default();
    let mut our_spec = ours.spec.unwrap_or_default();
    let mut pod = template.spec.clone().unwrap_or_default();

    let meta = template.metadata.clone().unwrap_or_default();
    let labels = merged_map([&meta.labels, &template.labels], our_meta.labels);
    let annotations = merged_map(
        [&meta.annotations, &template.annotations],
        our_meta.annotations,
    );

    if pod.restart_policy.as_deref().is_some_and(|p| p != "Always") {
        refused
            .push("podTemplate.spec.restartPolicy: a StatefulSet's pods restart Always".to_owned());
        pod.restart_policy = None;
    }
    for (field, value) in [
        ("hostname", &mut pod.hostname),
        ("subdomain", &mut pod.subdomain),
    ] {
        if value.take().is_some() {
            refused.push(format!(
                "podTemplate.spec.{field}: the StatefulSet sets it; the pods find each other by it"
            ));
        }
    }

    let our_index = our_spec.containers.iter().position(|c| c.name == CONTAINER);
    let our_container = our_index
        .map(|i| our_spec.containers.remove(i))
        .unwrap_or_default();
    let their_index = pod.containers.iter().position(|c| c.name == CONTAINER);
    let their_container = their_index.map(|i| pod.containers.remove(i));
    let our_ports = our_container.ports.clone().unwrap_or_default();
    let runtime = merge_runtime_container(template, their_container, our_container, &mut refused);
    let mut sidecars = std::mem::take(&mut pod.containers);
    let mut init = pod.init_containers.take().unwrap_or_default();
    for (field, containers) in [("containers", &mut sidecars), ("initContainers", &mut init)] {
        if containers.iter().any(|c| c.name == CONTAINER) {
            refused.push(format!(
                "podTemplate.spec.{field}[{CONTAINER}]: a second container of the runtime's name"
            ));
            containers.retain(|c| c.name != CONTAINER);
        }
        for container in containers.iter() {
            for port in container.ports.iter().flatten() {
                if our_ports
                    .iter()
                    .any(|o| o.container_port == port.container_port)
                {
                    refused.push(format!(
                        "podTemplate.spec.{field}[{}].ports: port {} is the runtime's",
                        container.name, port.container_port
                    ));
                }
            }
        }
    }
    pod.containers = std::iter::once(runtime)
        .chain(our_spec.containers)
        .chain(sidecars)
        .collect();
    pod.init_containers = (!init.is_empty()).then_some(init);

    let mut volumes = our_spec.volumes.unwrap_or_default();
    let taken: BTreeSet<String> = volumes.iter().map(|v| v.name.clone()).collect();
    for volume in pod.volumes.take().unwrap_or_default() {
        if volume.name == WORK_VOLUME {
            if let Some(work) = volumes.iter_mut().find(|v| v.name == WORK_VOLUME) {
                *work = volume;
            }
        } else if taken.contains(&volume.name) {
            refused.push(format!(
                "podTemplate.spec.volumes[{}]: the name is taken by a volume of the operator",
                volume.name
            ));
        } else {
            volumes.push(volume);
        }
    }
    pod.volumes = Some(volumes);
    pod.security_context = overlay(our_spec.security_context, pod.security_context.take());

    if !template.node_selector.is_empty() {
        let selector = pod.node_selector.get_or_insert_with(BTreeMap::new);
        selector.extend(template.node_selector.clone());
    }
    append(&mut pod.tolerations, &template.tolerations);
    append(&mut pod.image_pull_secrets, &template.image_pull_secrets);
    match (&pod.service_account_name, &template.service_account_name) {
        (Some(theirs), Some(shorthand)) if theirs != shorthand => refused.push(
            "podTemplate.serviceAccountName and podTemplate.spec.serviceAccountName differ: set one"
                .to_owned(),
        ),
        (None, Some(shorthand)) => pod.service_account_name = Some(shorthand.clone()),
        _ => {}
    }

    Merged {
        pod: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels,
                annotations,
                ..our_meta
            }),
            spec: Some(pod),
        },
        refused,
    }
}

/// The runtime container: the template's (if it has one) with the operator's
/// settings over it.
fn merge_runtime_container(
    template: &PodTemplate,
    theirs: Option<Container>,
    ours: Container,
    refused: &mut Vec<String>,
) -> Container {
    let field = |name: &str| format!("podTemplate.spec.containers[{CONTAINER}].{name}");
    let mut container = theirs.unwrap_or_default();
    if container.image.is_some() {
        refused.push(format!("{}: the job's image is spec.image", field("image")));
    }
    for (name, set) in [
        ("command", container.command.is_some()),
        ("args", container.args.is_some()),
    ] {
        if set {
            refused.push(format!("{}: the operator starts the runtime", field(name)));
        }
    }

    // Variables: the operator's, then the shorthand's, then the container's; a
    // name the operator sets, or any `STROM_*` but the log filter, is refused.
    let our_env = ours.env.unwrap_or_default();
    let operator_names: BTreeSet<String> = our_env.iter().map(|e| e.name.clone()).collect();
    let reserved = |name: &str| {
        (name.starts_with("STROM_") && name != LOG_FILTER_VARIABLE) || operator_names.contains(name)
    };
    let mut env = our_env.clone();
    for (source, vars) in [
        ("podTemplate.env".to_owned(), template.env.clone()),
        (field("env"), container.env.take().unwrap_or_default()),
    ] {
        for var in vars {
            if reserved(&var.name) {
                refused.push(format!("{source}: {} is set by the operator", var.name));
            } else {
                env.push(var);
            }
        }
    }

    // A prefix `STROM` with a key `_RESTORE_FROM` makes one of the operator's too.
    let reserved = |p: &str| !p.is_empty() && (p.starts_with("STROM_") || "STROM_".starts_with(p));
    for source in container.env_from.iter().flatten() {
        if source.prefix.as_deref().is_some_and(reserved) {
            refused.push(format!(
                "{}: prefix {} makes variables of the operator's",
                field("envFrom"),
                source.prefix.as_deref().unwrap_or_default()
            ));
        }
    }

    let our_ports = ours.ports.unwrap_or_default();
    let mut ports = our_ports.clone();
    for port in container.ports.take().unwrap_or_default() {
        let clash = our_ports.iter().any(|o| {
            o.container_port == port.container_port || (o.name.is_some() && o.name == port.name)
        });
        if clash {
            refused.push(format!(
                "{}: port {} ({}) is the runtime's",
                field("ports"),
                port.container_port,
                port.name.as_deref().unwrap_or("unnamed")
            ));
        } else {
            ports.push(port);
        }
    }

    let our_mounts = ours.volume_mounts.unwrap_or_default();
    let mut mounts = our_mounts.clone();
    for mount in container.volume_mounts.take().unwrap_or_default() {
        let over = our_mounts
            .iter()
            .find(|o| is_same_or_under(&mount.mount_path, &o.mount_path));
        match over {
            Some(o) => refused.push(format!(
                "{}: {} is where the operator mounts {}",
                field("volumeMounts"),
                mount.mount_path,
                o.name
            )),
            None => mounts.push(mount),
        }
    }

    let resources = match (container.resources.take(), &template.resources) {
        (Some(theirs), Some(_)) => {
            refused.push(format!(
                "podTemplate.resources and {}: set one",
                field("resources")
            ));
            Some(theirs)
        }
        (theirs, shorthand) => theirs.or_else(|| shorthand.clone()),
    };

    Container {
        name: ours.name,
        image: ours.image,
        command: ours.command,
        args: ours.args,
        image_pull_policy: container.image_pull_policy.or(ours.image_pull_policy),
        env: Some(env),
        ports: Some(ports),
        volume_mounts: Some(mounts),
        resources,
        termination_message_policy: container
            .termination_message_policy
            .or(ours.termination_message_policy),
        security_context: merge_security_context(
            ours.security_context,
            container.security_context.take(),
        ),
        ..container
    }
}

/// Whether `path` is `base` or a folder under it.
fn is_same_or_under(path: &str, base: &str) -> bool {
    let path = path.trim_end_matches('/');
    let base = base.trim_end_matches('/');
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A container's security context: the template's fields over `ours`, but
/// capabilities dropped by either stay dropped (a template adding one need not
/// repeat `drop: [ALL]`, which Pod Security "restricted" requires).
fn merge_security_context(
    ours: Option<SecurityContext>,
    theirs: Option<SecurityContext>,
) -> Option<SecurityContext> {
    let dropped: Vec<String> = [&ours, &theirs]
        .into_iter()
        .flatten()
        .filter_map(|c| c.capabilities.as_ref()?.drop.clone())
        .flatten()
        .fold(Vec::new(), |mut all, name| {
            if !all.contains(&name) {
                all.push(name);
            }
            all
        });
    let mut merged = overlay(ours, theirs)?;
    if !dropped.is_empty() {
        merged
            .capabilities
            .get_or_insert_with(Capabilities::default)
            .drop = Some(dropped);
    }
    Some(merged)
}

/// `ours` with each field `theirs` sets replaced by theirs (one level deep: a
/// nested object such as `capabilities` is taken whole).
fn overlay<T: Serialize + DeserializeOwned>(ours: Option<T>, theirs: Option<T>) -> Option<T> {
    let Some(theirs) = theirs else { return ours };
    let Some(ours) = ours else {
        return Some(theirs);
    };
    let (Ok(serde_json::Value::Object(mut merged)), Ok(serde_json::Value::Object(over))) =
        (serde_json::to_value(&ours), serde_json::to_value(&theirs))
    else {
        return Some(theirs);
    };
    merged.extend(over.into_iter().filter(|(_, v)| !v.is_null()));
    serde_json::from_value(serde_json::Value::Object(merged))
        .ok()
        .or(Some(theirs))
}

/// The maps of `theirs` merged in order, then `ours` over them; `None` when empty.
fn merged_map<const N: usize>(
    theirs: [&BTreeMap<String, String>; N],
    ours: Option<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    let mut merged = BTreeMap::new();
    for map in theirs {
        merged.extend(map.clone());
    }
    merged.extend(ours.unwrap_or_default());
    (!merged.is_empty()).then_some(merged)
}

/// Appends `extra` to the list in `list`, creating it when needed.
fn append<T: Clone>(list: &mut Option<Vec<T>>, extra: &[T]) {
    if !extra.is_empty() {
        list.get_or_insert_with(Vec::new).extend_from_slice(extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Capabilities, ContainerPort, EnvVar, PodSecurityContext, PodSpec, ResourceRequirements,
        SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    /// A pod as the operator builds one: the runtime container with its
    /// variables, ports and mounts; its volumes; the restricted security contexts.
    fn ours() -> PodTemplateSpec {
        let mount = |name: &str, path: &str| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..VolumeMount::default()
        };
        let env = |name: &str| EnvVar {
            name: name.into(),
            value: Some("operator".into()),
            ..EnvVar::default()
        };
        let port = |name: &str, number: i32| ContainerPort {
            name: Some(name.into()),
            container_port: number,
            ..ContainerPort::default()
        };
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("strom.dev/job".into(), "j".into())])),
                annotations: Some(BTreeMap::from([("strom.dev/revision".into(), "r".into())])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: CONTAINER.into(),
                    image: Some("strom:1".into()),
                    args: Some(vec!["worker".into()]),
                    env: Some(vec![env("STROM_JOB_ID"), env("TMPDIR"), env("AWS_REGION")]),
                    ports: Some(vec![port("dataflow", 7000), port("control", 8081)]),
                    volume_mounts: Some(vec![
                        mount("job", "/etc/strom/job"),
                        mount("work", "/var/lib/strom"),
                    ]),
                    termination_message_policy: Some("FallbackToLogsOnError".into()),
                    security_context: Some(SecurityContext {
                        run_as_non_root: Some(true),
                        read_only_root_filesystem: Some(true),
                        capabilities: Some(Capabilities {
                            drop: Some(vec!["ALL".into()]),
                            ..Capabilities::default()
                        }),
                        ..SecurityContext::default()
                    }),
                    ..Container::default()
                }],
                volumes: Some(vec![
                    Volume {
                        name: "job".into(),
                        ..Volume::default()
                    },
                    Volume {
                        name: "work".into(),
                        ..Volume::default()
                    },
                ]),
                security_context: Some(PodSecurityContext {
                    fs_group: Some(65532),
                    run_as_non_root: Some(true),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        ..SeccompProfile::default()
                    }),
                    ..PodSecurityContext::default()
                }),
                ..PodSpec::default()
            }),
        }
    }

    fn template(yaml: &str) -> PodTemplate {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn runtime(pod: &PodTemplateSpec) -> &Container {
        &pod.spec.as_ref().unwrap().containers[0]
    }

    #[test]
    fn no_template_leaves_the_operators_pod_as_it_is() {
        let merged = merge(None, ours());
        assert_eq!(merged.pod, ours());
        assert!(merged.refused.is_empty());
        let merged = merge(Some(&PodTemplate::default()), ours());
        assert_eq!(merged.pod, ours());
        assert!(merged.refused.is_empty());
    }

    #[test]
    fn a_full_template_is_merged_with_what_the_operator_sets() {
        let template = template(
            r#"
labels: {team: payments}
metadata:
  labels: {tier: stream, strom.dev/job: other}
  annotations: {prometheus.io/scrape: "true"}
resources: {requests: {cpu: 500m}}
env: [{name: STROM_LOG, value: info}]
tolerations: [{key: dedicated, operator: Exists}]
nodeSelector: {disk: ssd}
spec:
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]
  topologySpreadConstraints:
    - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}
  tolerations: [{key: spot, operator: Exists}]
  nodeSelector: {arch: arm64}
  priorityClassName: streaming
  securityContext: {runAsUser: 1000, supplementalGroups: [4000]}
  volumes: [{name: scratch, emptyDir: {}}, {name: work, emptyDir: {medium: Memory}}]
  initContainers: [{name: warm-up, image: busybox}]
  containers:
    - name: log-shipper
      image: fluent-bit:3
    - name: runtime
      env: [{name: MALLOC_CONF, value: "background_thread:true"}]
      volumeMounts: [{name: scratch, mountPath: /scratch}]
      ports: [{name: profiler, containerPort: 6060}]
      livenessProbe: {tcpSocket: {port: 6060}}
      securityContext:
        capabilities: {add: [NET_BIND_SERVICE]}
"#,
        );
        let merged = merge(Some(&template), ours());
        assert_eq!(merged.refused, Vec::<String>::new());
        let pod = merged.pod.spec.as_ref().unwrap();
        let meta = merged.pod.metadata.as_ref().unwrap();

        // The operator's labels win; the template's are kept.
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["strom.dev/job"], "j");
        assert_eq!(labels["team"], "payments");
        assert_eq!(labels["tier"], "stream");
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations["strom.dev/revision"], "r");
        assert_eq!(annotations["prometheus.io/scrape"], "true");

        // The runtime container first, then the sidecar.
        let names: Vec<_> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [CONTAINER, "log-shipper"]);
        let runtime = runtime(&merged.pod);
        assert_eq!(runtime.image.as_deref(), Some("strom:1"));
        assert_eq!(runtime.args, Some(vec!["worker".to_owned()]));
        let env: Vec<_> = runtime
            .env
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(
            env,
            [
                "STROM_JOB_ID",
                "TMPDIR",
                "AWS_REGION",
                "STROM_LOG",
                "MALLOC_CONF"
            ]
        );
        let ports: Vec<_> = runtime
            .ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .collect();
        assert_eq!(ports, [7000, 8081, 6060]);
        let mounts: Vec<_> = runtime
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/etc/strom/job", "/var/lib/strom", "/scratch"]);
        assert!(runtime.liveness_probe.is_some());
        assert_eq!(
            runtime.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        assert_eq!(
            runtime.resources,
            Some(ResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "cpu".to_owned(),
                    Quantity("500m".into())
                )])),
                ..ResourceRequirements::default()
            })
        );
        // The template's security context fields over the operator's.
        let security = runtime.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.run_as_non_root, Some(true));
        let capabilities = security.capabilities.as_ref().unwrap();
        assert_eq!(capabilities.add, Some(vec!["NET_BIND_SERVICE".to_owned()]));
        assert_eq!(capabilities.drop, Some(vec!["ALL".to_owned()]));
        // Sidecars and init containers are as written.
        assert_eq!(pod.containers[1].security_context, None);
        let pod_security = pod.security_context.as_ref().unwrap();
        assert_eq!(pod_security.run_as_user, Some(1000));
        assert_eq!(pod_security.supplemental_groups, Some(vec![4000]));
        assert_eq!(pod_security.fs_group, Some(65532));
        assert_eq!(
            pod_security
                .seccomp_profile
                .as_ref()
                .map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );

        // Volumes: the operator's, then the template's, whose `work` replaces the
        // operator's; scheduling as written, the shorthands added.
        let volumes: Vec<_> = pod
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["job", "work", "scratch"]);
        let work = &pod.volumes.as_ref().unwrap()[1];
        let medium = work.empty_dir.as_ref().and_then(|d| d.medium.as_deref());
        assert_eq!(medium, Some("Memory"));
        assert!(pod.affinity.is_some());
        assert_eq!(pod.topology_spread_constraints.as_ref().unwrap().len(), 1);
        assert_eq!(pod.priority_class_name.as_deref(), Some("streaming"));
        assert_eq!(pod.init_containers.as_ref().unwrap()[0].name, "warm-up");
        let tolerations: Vec<_> = pod
            .tolerations
            .iter()
            .flatten()
            .map(|t: &Toleration| t.key.as_deref().unwrap())
            .collect();
        assert_eq!(tolerations, ["spot", "dedicated"]);
        let selector = pod.node_selector.as_ref().unwrap();
        assert_eq!(
            (selector["arch"].as_str(), selector["disk"].as_str()),
            ("arm64", "ssd")
        );
    }

    #[test]
    fn what_would_break_the_job_is_refused_and_named() {
        let template = template(
            r#"
env: [{name: STROM_PEERS, value: x}, {name: TMPDIR, value: /tmp}]
resources: {requests: {cpu: 1}}
serviceAccountName: a
spec:
  restartPolicy: Never
  hostname: h
  subdomain: s
  serviceAccountName: b
  volumes: [{name: job, emptyDir: {}}]
  initContainers: [{name: runtime, image: busybox}]
  containers:
    - name: proxy
      image: envoy
      ports: [{containerPort: 8081}]
    - name: runtime
      image: my/strom:2
      command: [/bin/sh]
      args: [-c, sleep]
      envFrom:
        - {prefix: STROM_, configMapRef: {name: settings}}
        - {prefix: STR, configMapRef: {name: settings}}
        - {prefix: APP_, configMapRef: {name: other}}
      env: [{name: AWS_REGION, value: eu}, {name: STROM_ANYTHING, value: x}]
      ports: [{containerPort: 7000}, {name: control, containerPort: 9000}]
      volumeMounts:
        - {name: scratch, mountPath: /etc/strom/job/extra}
        - {name: scratch, mountPath: /var/lib/strom/}
      resources: {requests: {cpu: 2}}
    - name: runtime
      image: my/strom:3
"#,
        );
        let merged = merge(Some(&template), ours());
        let expected = [
            "podTemplate.spec.restartPolicy: a StatefulSet's pods restart Always",
            "podTemplate.spec.hostname: the StatefulSet sets it; the pods find each other by it",
            "podTemplate.spec.subdomain: the StatefulSet sets it; the pods find each other by it",
            "podTemplate.spec.containers[runtime].image: the job's image is spec.image",
            "podTemplate.spec.containers[runtime].command: the operator starts the runtime",
            "podTemplate.spec.containers[runtime].args: the operator starts the runtime",
            "podTemplate.env: STROM_PEERS is set by the operator",
            "podTemplate.env: TMPDIR is set by the operator",
            "podTemplate.spec.containers[runtime].env: AWS_REGION is set by the operator",
            "podTemplate.spec.containers[runtime].env: STROM_ANYTHING is set by the operator",
            "podTemplate.spec.containers[runtime].envFrom: prefix STROM_ makes variables of the operator's",
            "podTemplate.spec.containers[runtime].envFrom: prefix STR makes variables of the operator's",
            "podTemplate.spec.containers[runtime].ports: port 7000 (unnamed) is the runtime's",
            "podTemplate.spec.containers[runtime].ports: port 9000 (control) is the runtime's",
            "podTemplate.spec.containers[runtime].volumeMounts: /etc/strom/job/extra is where the operator mounts job",
            "podTemplate.spec.containers[runtime].volumeMounts: /var/lib/strom/ is where the operator mounts work",
            "podTemplate.resources and podTemplate.spec.containers[runtime].resources: set one",
            "podTemplate.spec.containers[runtime]: a second container of the runtime's name",
            "podTemplate.spec.containers[proxy].ports: port 8081 is the runtime's",
            "podTemplate.spec.initContainers[runtime]: a second container of the runtime's name",
            "podTemplate.spec.volumes[job]: the name is taken by a volume of the operator",
            "podTemplate.serviceAccountName and podTemplate.spec.serviceAccountName differ: set one",
        ];
        assert_eq!(merged.refused, expected);

        // What the operator owns stays the operator's in the merged pod.
        let pod = merged.pod.spec.as_ref().unwrap();
        let runtime = runtime(&merged.pod);
        assert_eq!(runtime.image.as_deref(), Some("strom:1"));
        assert_eq!(runtime.command, None);
        assert_eq!(runtime.args, Some(vec!["worker".to_owned()]));
        assert_eq!(runtime.env, ours().spec.unwrap().containers[0].env);
        assert_eq!(runtime.ports, ours().spec.unwrap().containers[0].ports);
        assert_eq!(
            runtime.volume_mounts,
            ours().spec.unwrap().containers[0].volume_mounts
        );
        assert_eq!(
            (pod.restart_policy.as_ref(), pod.hostname.as_ref()),
            (None, None)
        );
        assert_eq!(pod.volumes, ours().spec.unwrap().volumes);
        assert_eq!(pod.init_containers, None);
        let names: Vec<_> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [CONTAINER, "proxy"]);
    }

    #[test]
    fn a_folder_is_under_its_parent_and_not_under_a_longer_name() {
        assert!(is_same_or_under("/var/lib/strom", "/var/lib/strom/"));
        assert!(is_same_or_under("/var/lib/strom/rocksdb", "/var/lib/strom"));
        assert!(!is_same_or_under("/var/lib/strom-extra", "/var/lib/strom"));
        assert!(!is_same_or_under("/var/lib", "/var/lib/strom"));
    }
}
