//! The MITRE ATT&CK catalogue: Sigma `attack.*` tags to ECS `threat.*` fields.

use serde_json::{json, Map, Value};

/// Splits Sigma tags into ECS threat fields. Returns `None` when the rule has no `attack.*` tags
/// naming a known tactic or a technique.
///
/// Recognized tags (case-insensitive): `attack.<tactic-name>` with hyphens or underscores
/// (`attack.credential-access`, `attack.credential_access`), `attack.ta<NNNN>`, `attack.t<NNNN>`
/// and `attack.t<NNNN>.<NNN>`. A sub-technique also contributes its parent technique. Group
/// (`attack.g…`) and software (`attack.s…`) tags and unknown tactic names are ignored.
///
/// The result follows ECS: `threat.framework`, `threat.tactic.{id,name,reference}`,
/// `threat.technique.{id,name,reference}` and `threat.technique.subtechnique.{id,name,reference}`,
/// each a list in tag order without duplicates. The `id`, `name` and `reference` lists are
/// parallel; a technique missing from the embedded name table is named by its id, so the lists
/// stay aligned.
pub fn threat_from_tags(tags: &[String]) -> Option<Value> {
    let mut tactics: Vec<&Tactic> = Vec::new();
    let mut techniques: Vec<String> = Vec::new();
    let mut subtechniques: Vec<String> = Vec::new();

    for tag in tags {
        let tag = tag.trim().to_ascii_lowercase();
        let Some(rest) = tag.strip_prefix("attack.") else {
            continue;
        };
        if let Some((technique, sub)) = parse_technique(rest) {
            push_unique(&mut techniques, technique);
            if let Some(sub) = sub {
                push_unique(&mut subtechniques, sub);
            }
        } else if let Some(tactic) = find_tactic(rest) {
            if !tactics.iter().any(|t| t.id == tactic.id) {
                tactics.push(tactic);
            }
        }
    }
    if tactics.is_empty() && techniques.is_empty() {
        return None;
    }

    let mut threat = Map::new();
    threat.insert("framework".into(), json!("MITRE ATT&CK"));
    if !tactics.is_empty() {
        threat.insert(
            "tactic".into(),
            json!({
                "id": tactics.iter().map(|t| t.id).collect::<Vec<_>>(),
                "name": tactics.iter().map(|t| t.name).collect::<Vec<_>>(),
                "reference": tactics
                    .iter()
                    .map(|t| format!("https://attack.mitre.org/tactics/{}/", t.id))
                    .collect::<Vec<_>>(),
            }),
        );
    }
    if !techniques.is_empty() {
        let mut technique = technique_fields(&techniques);
        if !subtechniques.is_empty() {
            technique.insert(
                "subtechnique".into(),
                Value::Object(technique_fields(&subtechniques)),
            );
        }
        threat.insert("technique".into(), Value::Object(technique));
    }
    Some(Value::Object(threat))
}

/// An Enterprise ATT&CK tactic.
pub(super) struct Tactic {
    pub(super) id: &'static str,
    pub(super) name: &'static str,
    /// The tag form, hyphenated (`credential-access`).
    pub(super) slug: &'static str,
}

/// The 14 Enterprise ATT&CK tactics, in matrix order.
#[rustfmt::skip]
pub(super) const TACTICS: [Tactic; 14] = [
    Tactic { id: "TA0043", name: "Reconnaissance", slug: "reconnaissance" },
    Tactic { id: "TA0042", name: "Resource Development", slug: "resource-development" },
    Tactic { id: "TA0001", name: "Initial Access", slug: "initial-access" },
    Tactic { id: "TA0002", name: "Execution", slug: "execution" },
    Tactic { id: "TA0003", name: "Persistence", slug: "persistence" },
    Tactic { id: "TA0004", name: "Privilege Escalation", slug: "privilege-escalation" },
    Tactic { id: "TA0005", name: "Defense Evasion", slug: "defense-evasion" },
    Tactic { id: "TA0006", name: "Credential Access", slug: "credential-access" },
    Tactic { id: "TA0007", name: "Discovery", slug: "discovery" },
    Tactic { id: "TA0008", name: "Lateral Movement", slug: "lateral-movement" },
    Tactic { id: "TA0009", name: "Collection", slug: "collection" },
    Tactic { id: "TA0011", name: "Command and Control", slug: "command-and-control" },
    Tactic { id: "TA0010", name: "Exfiltration", slug: "exfiltration" },
    Tactic { id: "TA0040", name: "Impact", slug: "impact" },
];

/// Names of the ATT&CK techniques and sub-techniques relevant to Kubernetes and cloud control
/// planes. Sub-technique names are their own (ECS `threat.technique.subtechnique.name`), without
/// the parent's name.
pub(super) const TECHNIQUES: &[(&str, &str)] = &[
    ("T1003", "OS Credential Dumping"),
    ("T1005", "Data from Local System"),
    ("T1021", "Remote Services"),
    ("T1036", "Masquerading"),
    ("T1036.005", "Match Legitimate Resource Name or Location"),
    ("T1040", "Network Sniffing"),
    ("T1046", "Network Service Discovery"),
    ("T1053", "Scheduled Task/Job"),
    ("T1053.003", "Cron"),
    ("T1053.007", "Container Orchestration Job"),
    ("T1059", "Command and Scripting Interpreter"),
    ("T1059.004", "Unix Shell"),
    ("T1068", "Exploitation for Privilege Escalation"),
    ("T1069", "Permission Groups Discovery"),
    ("T1069.003", "Cloud Groups"),
    ("T1070", "Indicator Removal"),
    ("T1078", "Valid Accounts"),
    ("T1078.001", "Default Accounts"),
    ("T1078.003", "Local Accounts"),
    ("T1078.004", "Cloud Accounts"),
    ("T1087", "Account Discovery"),
    ("T1087.004", "Cloud Account"),
    ("T1090", "Proxy"),
    ("T1095", "Non-Application Layer Protocol"),
    ("T1098", "Account Manipulation"),
    ("T1098.001", "Additional Cloud Credentials"),
    ("T1098.003", "Additional Cloud Roles"),
    ("T1098.006", "Additional Container Cluster Roles"),
    ("T1105", "Ingress Tool Transfer"),
    ("T1110", "Brute Force"),
    ("T1133", "External Remote Services"),
    ("T1134", "Access Token Manipulation"),
    ("T1136", "Create Account"),
    ("T1190", "Exploit Public-Facing Application"),
    ("T1204", "User Execution"),
    ("T1204.003", "Malicious Image"),
    ("T1485", "Data Destruction"),
    ("T1489", "Service Stop"),
    ("T1496", "Resource Hijacking"),
    ("T1498", "Network Denial of Service"),
    ("T1499", "Endpoint Denial of Service"),
    ("T1505", "Server Software Component"),
    ("T1525", "Implant Internal Image"),
    ("T1526", "Cloud Service Discovery"),
    ("T1528", "Steal Application Access Token"),
    ("T1530", "Data from Cloud Storage"),
    ("T1531", "Account Access Removal"),
    ("T1543", "Create or Modify System Process"),
    ("T1543.005", "Container Service"),
    ("T1548", "Abuse Elevation Control Mechanism"),
    ("T1548.001", "Setuid and Setgid"),
    ("T1550", "Use Alternate Authentication Material"),
    ("T1550.001", "Application Access Token"),
    ("T1552", "Unsecured Credentials"),
    ("T1552.001", "Credentials In Files"),
    ("T1552.005", "Cloud Instance Metadata API"),
    ("T1552.007", "Container API"),
    ("T1556", "Modify Authentication Process"),
    ("T1557", "Adversary-in-the-Middle"),
    ("T1562", "Impair Defenses"),
    ("T1562.001", "Disable or Modify Tools"),
    ("T1562.008", "Disable or Modify Cloud Logs"),
    ("T1564", "Hide Artifacts"),
    ("T1565", "Data Manipulation"),
    ("T1565.002", "Transmitted Data Manipulation"),
    ("T1580", "Cloud Infrastructure Discovery"),
    ("T1588", "Obtain Capabilities"),
    ("T1609", "Container Administration Command"),
    ("T1610", "Deploy Container"),
    ("T1611", "Escape to Host"),
    ("T1612", "Build Image on Host"),
    ("T1613", "Container and Resource Discovery"),
    ("T1648", "Serverless Execution"),
    ("T1649", "Steal or Forge Authentication Certificates"),
];

/// A tactic by its tag form (`credential-access`, `credential_access`) or id (`ta0006`).
fn find_tactic(tag: &str) -> Option<&'static Tactic> {
    let slug = tag.replace('_', "-");
    TACTICS
        .iter()
        .find(|t| t.slug == slug || t.id.eq_ignore_ascii_case(tag))
}

/// Parses `tNNNN` or `tNNNN.NNN` (lowercase, without the `attack.` prefix) into the uppercase
/// technique id and, for a sub-technique, its full uppercase id.
pub(super) fn parse_technique(tag: &str) -> Option<(String, Option<String>)> {
    let digits = tag.strip_prefix('t')?;
    let (technique, sub) = match digits.split_once('.') {
        Some((technique, sub)) => (technique, Some(sub)),
        None => (digits, None),
    };
    let all_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(technique, 4) {
        return None;
    }
    match sub {
        None => Some((format!("T{technique}"), None)),
        Some(sub) if all_digits(sub, 3) => {
            Some((format!("T{technique}"), Some(format!("T{technique}.{sub}"))))
        }
        Some(_) => None,
    }
}

/// `{id, name, reference}` lists for technique (or sub-technique) ids.
fn technique_fields(ids: &[String]) -> Map<String, Value> {
    // A technique missing from TECHNIQUES is named by its id: ECS readers pair `id[i]` with
    // `name[i]`, so every id needs a name, and the id is the most honest one we have.
    let names: Vec<&str> = ids
        .iter()
        .map(|id| {
            TECHNIQUES
                .iter()
                .find(|(known, _)| known == id)
                .map_or(id.as_str(), |(_, name)| name)
        })
        .collect();
    let references: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                "https://attack.mitre.org/techniques/{}/",
                id.replace('.', "/")
            )
        })
        .collect();
    let mut fields = Map::new();
    fields.insert("id".into(), json!(ids));
    fields.insert("name".into(), json!(names));
    fields.insert("reference".into(), json!(references));
    fields
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}
