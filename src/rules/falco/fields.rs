//! The fields of Falco's k8saudit plugin (`ka.*`) and json plugin (`json.*`, `jevt.*`), with
//! extractors that read them from an audit event's JSON text.
//!
//! Sources: falcosecurity/plugins `plugins/k8saudit/pkg/k8saudit/fields.go` (names, list-ness,
//! arguments), `extract.go` (`ExtractFromJSON` and its helpers: the values), the field table of
//! the plugin's README (the `initContainers` and `ephemeralContainers` families and
//! `ka.sourceips`), and `plugins/json/pkg/json/json.go` (the json plugin).
//!
//! Every field of both plugins has the type `string`; list fields give several strings. A
//! field that is not available in an event gives no value (`None`), as does an extraction
//! error in the plugin (a value of an unexpected JSON type). Non-string JSON values are
//! rendered as compact JSON text (`true`, `5`, `{"a":1}`), as the plugin's `MarshalTo` does.
//! Every `ka.*` field is unavailable in a JSON value without an `auditID` member.

use super::json::{Json, Kind};

/// How a field takes an argument in brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// No argument.
    None,
    /// An optional numeric index (`[0]`).
    Index,
    /// A required key (`[command]`, `[/stage]`).
    Key,
}

/// The three kinds of container list in a pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Containers {
    Regular,
    Init,
    Ephemeral,
}

impl Containers {
    fn key(self) -> &'static str {
        match self {
            Containers::Regular => "containers",
            Containers::Init => "initContainers",
            Containers::Ephemeral => "ephemeralContainers",
        }
    }
}

/// How a field's values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extract {
    /// The value at a path (`extractFromKeys`): one string, or for a list field the elements of
    /// an array.
    Keys(&'static [&'static str]),
    /// `ka.uri.param[key]`: the first value of a query parameter of `requestURI`.
    UriParam,
    /// `ka.req.binding.subject.has_name[...]`: always `true`.
    AlwaysTrue,
    /// The images of a container list; an error (no value) if one lacks an image.
    Images(Containers),
    /// The repositories of those images.
    Repositories(Containers),
    /// The image of the first container.
    FirstImage,
    /// The repository of the first container's image.
    FirstRepository,
    /// The host ports (or container ports) of a container list.
    HostPorts(Containers),
    /// A value under each container of a list, containers without it skipped.
    PerContainer(Containers, &'static [&'static str]),
    /// `true` if any container has `securityContext.privileged` true, else `false`.
    AnyPrivileged,
    /// A per-container value defaulting to the pod's (`readFromContainerEffectively`).
    Effective(Containers, &'static str),
    /// The elements of an array under each role rule (`extractRulesField`).
    RulesField(&'static str),
    /// The values under each element of `requestObject.spec.<array>`, missing ones skipped.
    SpecItems(&'static [&'static str]),
    /// `ka.req.volume.hostpath[path]`: `true` if the first volume's hostPath is that path (or
    /// has that prefix, for an argument ending in `*`), else `false`.
    VolumeHostpath,
    /// The volume types: every key but `name` of each volume.
    VolumeTypes,
    /// `json.value[pointer]`: the value at a JSON pointer.
    JsonValue,
    /// `json.obj`: the whole event, indented.
    JsonObj,
    /// `json.rawtime`: the event's timestamp in nanoseconds.
    JsonRawtime,
}

/// One field of the catalogue.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldDef {
    /// The field's name, e.g. `ka.user.name`.
    pub name: &'static str,
    /// True if the field gives a list of strings.
    pub list: bool,
    /// How the field takes an argument.
    pub arg: ArgKind,
    extract: Extract,
}

/// A field's argument as written in a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldArg {
    /// None given.
    None,
    /// A numeric index.
    Index(usize),
    /// A key.
    Key(String),
}

/// A field of the catalogue with its argument, as used in a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The catalogue entry.
    pub def: &'static FieldDef,
    /// The argument.
    pub arg: FieldArg,
}

const fn f(name: &'static str, list: bool, arg: ArgKind, extract: Extract) -> FieldDef {
    FieldDef {
        name,
        list,
        arg,
        extract,
    }
}

const fn single(name: &'static str, path: &'static [&'static str]) -> FieldDef {
    f(name, false, ArgKind::None, Extract::Keys(path))
}

use ArgKind::{Index, Key};
use Containers::{Ephemeral, Init, Regular};
use Extract as E;

/// Every field, in the plugins' order.
static CATALOGUE: &[FieldDef] = &[
    single("ka.auditid", &["auditID"]),
    single("ka.stage", &["stage"]),
    single(
        "ka.auth.decision",
        &["annotations", "authorization.k8s.io/decision"],
    ),
    single(
        "ka.auth.reason",
        &["annotations", "authorization.k8s.io/reason"],
    ),
    single("ka.user.name", &["user", "username"]),
    f(
        "ka.user.groups",
        true,
        ArgKind::None,
        E::Keys(&["user", "groups"]),
    ),
    single("ka.impuser.name", &["impersonatedUser", "username"]),
    single("ka.verb", &["verb"]),
    single("ka.uri", &["requestURI"]),
    f("ka.uri.param", false, Key, E::UriParam),
    single("ka.target.name", &["objectRef", "name"]),
    single("ka.target.namespace", &["objectRef", "namespace"]),
    single("ka.target.resource", &["objectRef", "resource"]),
    single("ka.target.subresource", &["objectRef", "subresource"]),
    f(
        "ka.req.binding.subjects",
        true,
        ArgKind::None,
        E::Keys(&["requestObject", "subjects"]),
    ),
    single("ka.req.binding.role", &["requestObject", "roleRef", "name"]),
    f("ka.req.binding.subject.has_name", false, Key, E::AlwaysTrue),
    single("ka.req.configmap.name", &["objectRef", "name"]),
    single("ka.req.configmap.obj", &["requestObject", "data"]),
    f(
        "ka.req.pod.containers.image",
        true,
        Index,
        E::Images(Regular),
    ),
    f(
        "ka.req.container.image",
        false,
        ArgKind::None,
        E::FirstImage,
    ),
    f(
        "ka.req.pod.containers.image.repository",
        true,
        Index,
        E::Repositories(Regular),
    ),
    f(
        "ka.req.container.image.repository",
        false,
        ArgKind::None,
        E::FirstRepository,
    ),
    single("ka.req.pod.host_ipc", &["requestObject", "spec", "hostIPC"]),
    single(
        "ka.req.pod.host_network",
        &["requestObject", "spec", "hostNetwork"],
    ),
    single(
        "ka.req.container.host_network",
        &["requestObject", "spec", "hostNetwork"],
    ),
    single("ka.req.pod.host_pid", &["requestObject", "spec", "hostPID"]),
    f(
        "ka.req.pod.containers.host_port",
        true,
        Index,
        E::HostPorts(Regular),
    ),
    f(
        "ka.req.pod.containers.privileged",
        true,
        Index,
        E::PerContainer(Regular, PRIVILEGED),
    ),
    f(
        "ka.req.container.privileged",
        false,
        ArgKind::None,
        E::AnyPrivileged,
    ),
    f(
        "ka.req.pod.containers.allow_privilege_escalation",
        true,
        Index,
        E::PerContainer(Regular, ALLOW_ESC),
    ),
    f(
        "ka.req.pod.containers.read_only_fs",
        true,
        Index,
        E::PerContainer(Regular, READ_ONLY),
    ),
    single(
        "ka.req.pod.run_as_user",
        &["requestObject", "spec", "securityContext", "runAsUser"],
    ),
    f(
        "ka.req.pod.containers.run_as_user",
        true,
        Index,
        E::PerContainer(Regular, RUN_AS_USER),
    ),
    f(
        "ka.req.pod.containers.eff_run_as_user",
        true,
        Index,
        E::Effective(Regular, "runAsUser"),
    ),
    single(
        "ka.req.pod.run_as_group",
        &["requestObject", "spec", "securityContext", "runAsGroup"],
    ),
    f(
        "ka.req.pod.containers.run_as_group",
        true,
        Index,
        E::PerContainer(Regular, RUN_AS_GROUP),
    ),
    f(
        "ka.req.pod.containers.eff_run_as_group",
        true,
        Index,
        E::Effective(Regular, "runAsGroup"),
    ),
    f(
        "ka.req.pod.containers.proc_mount",
        true,
        Index,
        E::PerContainer(Regular, PROC_MOUNT),
    ),
    f(
        "ka.req.role.rules",
        true,
        ArgKind::None,
        E::Keys(&["requestObject", "rules"]),
    ),
    f(
        "ka.req.role.rules.apiGroups",
        true,
        Index,
        E::RulesField("apiGroups"),
    ),
    f(
        "ka.req.role.rules.nonResourceURLs",
        true,
        Index,
        E::RulesField("nonResourceURLs"),
    ),
    f(
        "ka.req.role.rules.verbs",
        true,
        Index,
        E::RulesField("verbs"),
    ),
    f(
        "ka.req.role.rules.resources",
        true,
        Index,
        E::RulesField("resources"),
    ),
    single(
        "ka.req.pod.fs_group",
        &["requestObject", "spec", "securityContext", "fsGroup"],
    ),
    f(
        "ka.req.pod.supplemental_groups",
        true,
        ArgKind::None,
        E::Keys(&[
            "requestObject",
            "spec",
            "securityContext",
            "supplementalGroups",
        ]),
    ),
    f(
        "ka.req.pod.containers.add_capabilities",
        true,
        Index,
        E::PerContainer(Regular, ADD_CAPS),
    ),
    single("ka.req.service.type", &["requestObject", "spec", "type"]),
    f(
        "ka.req.service.ports",
        true,
        Index,
        E::SpecItems(&["ports"]),
    ),
    f(
        "ka.req.pod.volumes.hostpath",
        true,
        Index,
        E::SpecItems(&["volumes", "hostPath", "path"]),
    ),
    f("ka.req.volume.hostpath", false, Key, E::VolumeHostpath),
    f(
        "ka.req.pod.volumes.flexvolume_driver",
        true,
        Index,
        E::SpecItems(&["volumes", "flexVolume", "driver"]),
    ),
    f(
        "ka.req.pod.volumes.volume_type",
        true,
        Index,
        E::VolumeTypes,
    ),
    single("ka.resp.name", &["responseObject", "metadata", "name"]),
    single("ka.response.code", &["responseStatus", "code"]),
    single("ka.response.reason", &["responseStatus", "reason"]),
    single("ka.useragent", &["userAgent"]),
    f("ka.sourceips", true, Index, E::RulesField("sourceIPs")),
    f(
        "ka.req.pod.initContainers.image",
        true,
        Index,
        E::Images(Init),
    ),
    f(
        "ka.req.pod.initContainers.image.repository",
        true,
        Index,
        E::Repositories(Init),
    ),
    f(
        "ka.req.pod.initContainers.privileged",
        true,
        Index,
        E::PerContainer(Init, PRIVILEGED),
    ),
    f(
        "ka.req.pod.initContainers.allow_privilege_escalation",
        true,
        Index,
        E::PerContainer(Init, ALLOW_ESC),
    ),
    f(
        "ka.req.pod.initContainers.read_only_fs",
        true,
        Index,
        E::PerContainer(Init, READ_ONLY),
    ),
    f(
        "ka.req.pod.initContainers.run_as_user",
        true,
        Index,
        E::PerContainer(Init, RUN_AS_USER),
    ),
    f(
        "ka.req.pod.initContainers.eff_run_as_user",
        true,
        Index,
        E::Effective(Init, "runAsUser"),
    ),
    f(
        "ka.req.pod.initContainers.run_as_group",
        true,
        Index,
        E::PerContainer(Init, RUN_AS_GROUP),
    ),
    f(
        "ka.req.pod.initContainers.eff_run_as_group",
        true,
        Index,
        E::Effective(Init, "runAsGroup"),
    ),
    f(
        "ka.req.pod.initContainers.proc_mount",
        true,
        Index,
        E::PerContainer(Init, PROC_MOUNT),
    ),
    f(
        "ka.req.pod.initContainers.add_capabilities",
        true,
        Index,
        E::PerContainer(Init, ADD_CAPS),
    ),
    f(
        "ka.req.pod.initContainers.host_port",
        true,
        Index,
        E::HostPorts(Init),
    ),
    f(
        "ka.req.pod.ephemeralContainers.image",
        true,
        Index,
        E::Images(Ephemeral),
    ),
    f(
        "ka.req.pod.ephemeralContainers.image.repository",
        true,
        Index,
        E::Repositories(Ephemeral),
    ),
    f(
        "ka.req.pod.ephemeralContainers.privileged",
        true,
        Index,
        E::PerContainer(Ephemeral, PRIVILEGED),
    ),
    f(
        "ka.req.pod.ephemeralContainers.allow_privilege_escalation",
        true,
        Index,
        E::PerContainer(Ephemeral, ALLOW_ESC),
    ),
    f(
        "ka.req.pod.ephemeralContainers.read_only_fs",
        true,
        Index,
        E::PerContainer(Ephemeral, READ_ONLY),
    ),
    f(
        "ka.req.pod.ephemeralContainers.run_as_user",
        true,
        Index,
        E::PerContainer(Ephemeral, RUN_AS_USER),
    ),
    f(
        "ka.req.pod.ephemeralContainers.eff_run_as_user",
        true,
        Index,
        E::Effective(Ephemeral, "runAsUser"),
    ),
    f(
        "ka.req.pod.ephemeralContainers.run_as_group",
        true,
        Index,
        E::PerContainer(Ephemeral, RUN_AS_GROUP),
    ),
    f(
        "ka.req.pod.ephemeralContainers.eff_run_as_group",
        true,
        Index,
        E::Effective(Ephemeral, "runAsGroup"),
    ),
    f(
        "ka.req.pod.ephemeralContainers.proc_mount",
        true,
        Index,
        E::PerContainer(Ephemeral, PROC_MOUNT),
    ),
    f(
        "ka.req.pod.ephemeralContainers.add_capabilities",
        true,
        Index,
        E::PerContainer(Ephemeral, ADD_CAPS),
    ),
    f("json.value", false, Key, E::JsonValue),
    f("json.obj", false, ArgKind::None, E::JsonObj),
    f("json.rawtime", false, ArgKind::None, E::JsonRawtime),
    f("jevt.value", false, Key, E::JsonValue),
    f("jevt.obj", false, ArgKind::None, E::JsonObj),
    f("jevt.rawtime", false, ArgKind::None, E::JsonRawtime),
];

const PRIVILEGED: &[&str] = &["securityContext", "privileged"];
const ALLOW_ESC: &[&str] = &["securityContext", "allowPrivilegeEscalation"];
const READ_ONLY: &[&str] = &["securityContext", "readOnlyRootFilesystem"];
const RUN_AS_USER: &[&str] = &["securityContext", "runAsUser"];
const RUN_AS_GROUP: &[&str] = &["securityContext", "runAsGroup"];
const PROC_MOUNT: &[&str] = &["securityContext", "procMount"];
const ADD_CAPS: &[&str] = &["securityContext", "capabilities", "add"];

/// Every field of the catalogue.
pub fn catalogue() -> &'static [FieldDef] {
    CATALOGUE
}

/// The catalogue entry named `name`.
pub fn lookup(name: &str) -> Option<&'static FieldDef> {
    CATALOGUE.iter().find(|d| d.name == name)
}

/// The field `name` with its bracketed argument, checked against the catalogue: an unknown
/// field, a missing required argument, an argument the field does not take, or an index that
/// is not a number is an error.
pub fn resolve(name: &str, arg: Option<&str>) -> Result<Field, String> {
    let def = lookup(name).ok_or_else(|| format!("unknown field '{name}'"))?;
    let arg =
        match (def.arg, arg) {
            (ArgKind::None, None) | (ArgKind::Index, None) => FieldArg::None,
            (ArgKind::None, Some(a)) => {
                return Err(format!(
                    "field '{name}' does not take an argument ('[{a}]')"
                ))
            }
            (ArgKind::Key, None) => return Err(format!("field '{name}' requires an argument")),
            (ArgKind::Key, Some(a)) => FieldArg::Key(a.to_string()),
            (ArgKind::Index, Some(a)) => FieldArg::Index(a.parse().map_err(|_| {
                format!("field '{name}' takes a numeric index as argument, not '{a}'")
            })?),
        };
    Ok(Field { def, arg })
}

/// Whether `op` applies to `field`: `bcontains` and `bstartswith` apply to byte buffers only,
/// which no field of these plugins is.
///
/// Other operators than `exists`, `in` and `intersects` on a list field are accepted (Falco
/// loads such rules: `ka.req.role.rules.resources contains "pods/exec"` in Falco's own
/// engine-v4 rules file); libsinsp throws when it evaluates one
/// (`sinsp_filter_check::compare_rhs`), and [`super::eval`] takes it as false.
pub fn check_op(field: &Field, op: super::Op) -> Result<(), String> {
    use super::Op;
    if matches!(op, Op::BContains | Op::BStartsWith) {
        return Err(format!(
            "operator '{}' applies to byte buffers, and field '{}' is a string",
            op.as_str(),
            field.def.name
        ));
    }
    Ok(())
}

impl Field {
    /// The path of a field whose value is the JSON value at a fixed path of the event (the
    /// k8saudit plugin's `extractFromKeys` on a single-valued field, or `jevt.value` with a
    /// pointer without escapes), and whether the k8saudit plugin reads it (it then needs an
    /// `auditID`). `None` for every other field.
    pub fn plain_path(&self) -> Option<(Vec<&str>, bool)> {
        match (&self.def.extract, &self.arg) {
            (E::Keys(path), FieldArg::None) if !self.def.list => Some((path.to_vec(), true)),
            (E::JsonValue, FieldArg::Key(k)) if !k.contains('~') && k.starts_with('/') => {
                Some((k[1..].split('/').collect(), false))
            }
            _ => None,
        }
    }

    /// The field's values in the event whose JSON text is `raw`: `None` when the field is not
    /// available (and when the plugin would give no value, such as an empty list).
    pub fn extract(&self, raw: &str) -> Option<Vec<String>> {
        let root = Json::parse(raw)?;
        self.extract_json(root, raw)
    }

    pub(crate) fn extract_json(&self, root: Json<'_>, raw: &str) -> Option<Vec<String>> {
        let json_plugin = matches!(self.def.extract, E::JsonValue | E::JsonObj | E::JsonRawtime);
        if !json_plugin && root.get("auditID").is_none() {
            return None;
        }
        let index = match self.arg {
            FieldArg::Index(i) => Some(i),
            _ => None,
        };
        let key = match &self.arg {
            FieldArg::Key(k) => k.as_str(),
            _ => "",
        };
        let values = extract(self.def, root, raw, index, key)?;
        (!values.is_empty()).then_some(values)
    }
}

fn extract(
    def: &FieldDef,
    root: Json<'_>,
    raw: &str,
    index: Option<usize>,
    key: &str,
) -> Option<Vec<String>> {
    match def.extract {
        E::Keys(path) => from_keys(root, path, def.list),
        E::UriParam => uri_param(&root.get("requestURI")?.text(), key).map(|v| vec![v]),
        E::AlwaysTrue => Some(vec!["true".into()]),
        E::Images(c) => images(root, c, index),
        E::Repositories(c) => Some(
            images(root, c, index)?
                .iter()
                .map(|i| repository(i))
                .collect(),
        ),
        E::FirstImage => images(root, Regular, Some(0)).map(first),
        E::FirstRepository => images(root, Regular, Some(0))
            .map(|v| v.iter().take(1).map(|i| repository(i)).collect()),
        E::HostPorts(c) => host_ports(root, c, index),
        E::PerContainer(c, keys) => Some(skip_nil(&per_container(root, c, index, keys)?)),
        E::AnyPrivileged => any_privileged(root),
        E::Effective(c, key) => effective(root, c, index, key),
        E::RulesField(key) => rules_field(root, index, key),
        E::SpecItems(keys) => Some(skip_nil(&values_recursive(root, index, &spec(keys))?)),
        E::VolumeHostpath => volume_hostpath(root, key),
        E::VolumeTypes => volume_types(root, index),
        E::JsonValue => json_pointer(root, key).map(|v| vec![v.text()]),
        E::JsonObj => Some(vec![indent(raw)]),
        E::JsonRawtime => rawtime(root).map(|t| vec![t]),
    }
}

/// The first element alone.
fn first(mut v: Vec<String>) -> Vec<String> {
    v.truncate(1);
    v
}

/// `["requestObject", "spec", keys...]`.
fn spec<'k>(keys: &[&'k str]) -> Vec<&'k str> {
    let mut out = vec!["requestObject", "spec"];
    out.extend_from_slice(keys);
    out
}

/// `extractFromKeys`: the value at `path`; for a list field its elements (not an array: no
/// value).
fn from_keys(root: Json<'_>, path: &[&str], list: bool) -> Option<Vec<String>> {
    let v = root.path(path)?;
    if list {
        Some(v.items()?.into_iter().map(Json::text).collect())
    } else {
        Some(vec![v.text()])
    }
}

/// `getValuesRecursive`: walks `keys` from `v`; at an array, either takes the element at
/// `index` (missing: not available) or, without an index, walks every element, an element
/// where the path is missing giving `None`. An empty key stands for the value itself.
fn values_recursive<'a>(
    v: Json<'a>,
    index: Option<usize>,
    keys: &[&str],
) -> Option<Vec<Option<Json<'a>>>> {
    let mut v = v;
    for (i, k) in keys.iter().enumerate() {
        if v.kind() == Kind::Array {
            let items = v.items()?;
            match index {
                None => return Some(walk_all(&items, &keys[i..])),
                Some(n) => v = *items.get(n)?,
            }
        }
        if !k.is_empty() {
            v = v.get(k)?;
        }
    }
    Some(vec![Some(v)])
}

fn walk_all<'a>(items: &[Json<'a>], keys: &[&str]) -> Vec<Option<Json<'a>>> {
    let mut out = Vec::new();
    for item in items {
        match values_recursive(*item, None, keys) {
            Some(vals) => out.extend(vals),
            None => out.push(None),
        }
    }
    out
}

/// `arrayAsStringsSkipNil`: the texts of the values present.
fn skip_nil(values: &[Option<Json<'_>>]) -> Vec<String> {
    values.iter().flatten().map(|v| v.text()).collect()
}

/// `arrayAsStrings`: the texts of all the values, or nothing if one is missing.
fn all_present(values: &[Option<Json<'_>>]) -> Option<Vec<String>> {
    values.iter().map(|v| v.map(Json::text)).collect()
}

fn container_path(c: Containers, keys: &[&'static str]) -> Vec<&'static str> {
    let mut out = vec!["requestObject", "spec", c.key()];
    out.extend_from_slice(keys);
    out
}

fn per_container<'a>(
    root: Json<'a>,
    c: Containers,
    index: Option<usize>,
    keys: &[&'static str],
) -> Option<Vec<Option<Json<'a>>>> {
    values_recursive(root, index, &container_path(c, keys))
}

/// `readContainerImages`.
fn images(root: Json<'_>, c: Containers, index: Option<usize>) -> Option<Vec<String>> {
    all_present(&per_container(root, c, index, &["image"])?)
}

/// The repository part of an image: before the first `:`, then before the first `@`
/// (`readContainerRepositories`; a registry port cuts it short, as in the plugin).
fn repository(image: &str) -> String {
    let before_colon = image.split(':').next().unwrap_or_default();
    before_colon
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `readContainerHostPorts`: each port's `hostPort`, or its `containerPort` if it has none.
fn host_ports(root: Json<'_>, c: Containers, index: Option<usize>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for ports in per_container(root, c, index, &["ports"])?
        .into_iter()
        .flatten()
    {
        for port in ports.items()? {
            if let Some(p) = port.get("hostPort").or_else(|| port.get("containerPort")) {
                out.push(p.text());
            }
        }
    }
    Some(out)
}

/// `ka.req.container.privileged`.
fn any_privileged(root: Json<'_>) -> Option<Vec<String>> {
    let vals = per_container(root, Regular, None, PRIVILEGED)?;
    let any = vals.iter().flatten().any(|v| v.is_true());
    Some(vec![any.to_string()])
}

/// `readFromContainerEffectively`: each container's value, or the pod's, or `0`. As in the
/// plugin, both are read directly under `spec.<key>` and `containers[i].<key>` (not under
/// `securityContext`), so a pod spec written the Kubernetes way gives `0` for every container.
fn effective(
    root: Json<'_>,
    c: Containers,
    index: Option<usize>,
    key: &'static str,
) -> Option<Vec<String>> {
    let pod = match root.path(&["requestObject", "spec", key]) {
        Some(v) => v.text(),
        None => "0".to_string(),
    };
    let vals = per_container(root, c, index, &[key])?;
    Some(
        vals.iter()
            .map(|v| v.map_or_else(|| pod.clone(), Json::text))
            .collect(),
    )
}

/// `extractRulesField`: the elements of the array `key` under each of `requestObject.rules`.
/// The plugin reads `ka.sourceips` this way too, under `requestObject.rules`.
fn rules_field(root: Json<'_>, index: Option<usize>, key: &str) -> Option<Vec<String>> {
    let vals = values_recursive(root, index, &["requestObject", "rules", key])?;
    let mut out = Vec::new();
    for v in vals.into_iter().flatten() {
        if let Some(items) = v.items() {
            out.extend(items.into_iter().map(Json::text));
        }
    }
    Some(out)
}

/// `ka.req.volume.hostpath[arg]`: `true` if the path matches (`arg` ending in `*`: starts
/// with the rest), else `false`. The plugin walks the volumes with the request's argument
/// index, which libsinsp leaves at 0 for a key argument, so only the first volume is read, and
/// the field is unavailable when that volume has no `hostPath`.
fn volume_hostpath(root: Json<'_>, arg: &str) -> Option<Vec<String>> {
    let vals = values_recursive(root, Some(0), &spec(&["volumes", "hostPath", "path"]))?;
    let prefix = arg.strip_suffix('*');
    let hit = skip_nil(&vals)
        .iter()
        .any(|v| prefix.is_some_and(|p| v.starts_with(p)) || v == arg);
    Some(vec![hit.to_string()])
}

/// `ka.req.pod.volumes.volume_type`.
fn volume_types(root: Json<'_>, index: Option<usize>) -> Option<Vec<String>> {
    let vals = values_recursive(root, index, &spec(&["volumes", ""]))?;
    let mut out = Vec::new();
    for v in vals.into_iter().flatten() {
        for (k, _) in v.entries().unwrap_or_default() {
            if k != "name" {
                out.push(k);
            }
        }
    }
    Some(out)
}

/// The first value of query parameter `key` in `uri` (Go's `url.Parse` then
/// `url.ParseQuery`: pairs split at `&`, `+` is a space, `%XX` escapes; a malformed escape or a
/// `;` in the query fails the whole extraction).
fn uri_param(uri: &str, key: &str) -> Option<String> {
    let no_fragment = uri.split('#').next().unwrap_or_default();
    let (_, query) = no_fragment.split_once('?')?;
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if pair.contains(';') {
            return None;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (query_unescape(k)?, query_unescape(v)?);
        if found.is_none() && k == key {
            found = Some(v);
        }
    }
    found
}

fn query_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The value at a JSON pointer (RFC 6901 as the json plugin reads it: a leading `/` dropped,
/// split at `/`, `~1` then `~0` replaced, array elements by index).
fn json_pointer<'a>(root: Json<'a>, pointer: &str) -> Option<Json<'a>> {
    let p = pointer.strip_prefix('/').unwrap_or(pointer);
    let mut v = root;
    for part in p.split('/') {
        let key = part.replace("~1", "/").replace("~0", "~");
        v = v.get(&key)?;
    }
    Some(v)
}

/// The event's timestamp in nanoseconds since the epoch: the k8saudit plugin stamps each event
/// with its `stageTimestamp` (`source.go`, `parseSingleAuditEventJSON`).
fn rawtime(root: Json<'_>) -> Option<String> {
    let ts = root.get("stageTimestamp")?.text();
    let t = chrono::DateTime::parse_from_rfc3339(&ts).ok()?;
    t.timestamp_nanos_opt().map(|n| n.to_string())
}

/// `raw` indented by two spaces per level, `": "` after keys and empty containers kept
/// together (Go's `json.Indent(dst, src, "", "  ")`).
fn indent(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = raw.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            c if c.is_ascii_whitespace() => {}
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    out
}

impl std::fmt::Display for Field {
    /// The field as written in a rule: `ka.user.name`, `ka.req.pod.containers.image[0]`,
    /// `jevt.value[/verb]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.arg {
            FieldArg::None => f.write_str(self.def.name),
            FieldArg::Index(i) => write!(f, "{}[{i}]", self.def.name),
            FieldArg::Key(k) => write!(f, "{}[{k}]", self.def.name),
        }
    }
}
