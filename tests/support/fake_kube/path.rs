//! Request paths of the fake API: which collection or object, and which subresource.

/// A parsed API path: `/api/v1[/namespaces/NS]/RESOURCE[/NAME[/SUBRESOURCE]]` or the same
/// under `/apis/GROUP/VERSION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `api/v1` or `apis/GROUP/VERSION`.
    pub prefix: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    pub fn parse(path: &str) -> Option<Target> {
        let s: Vec<&str> = path.split('/').filter(|x| !x.is_empty()).collect();
        let base = match s.first() {
            Some(&"api") => 2,
            Some(&"apis") => 3,
            _ => return None,
        };
        if s.len() <= base {
            return None;
        }
        let prefix = s[..base].join("/");
        let rest = &s[base..];
        // `namespaces/NS/status` is the Namespace's own subresource, not a collection.
        let (namespace, rest) = if rest.len() >= 3
            && rest[0] == "namespaces"
            && !matches!(rest[2], "status" | "finalize")
        {
            (Some(rest[1].to_string()), &rest[2..])
        } else {
            (None, rest)
        };
        if rest.len() > 3 {
            return None;
        }
        Some(Target {
            prefix,
            namespace,
            resource: rest[0].to_string(),
            name: rest.get(1).map(|s| s.to_string()),
            subresource: rest.get(2).map(|s| s.to_string()),
        })
    }

    /// The API group ("" for the core group).
    pub fn group(&self) -> &str {
        self.prefix
            .strip_prefix("apis/")
            .and_then(|gv| gv.split('/').next())
            .unwrap_or("")
    }

    /// `v1` or `GROUP/VERSION`.
    pub fn api_version(&self) -> String {
        self.prefix
            .strip_prefix("apis/")
            .or_else(|| self.prefix.strip_prefix("api/"))
            .unwrap_or(&self.prefix)
            .to_string()
    }

    /// `secrets` or `vaultsecrets.privx-operator.dev`, as the API server names it in messages.
    pub fn qualified_resource(&self) -> String {
        match self.group() {
            "" => self.resource.clone(),
            g => format!("{}.{g}", self.resource),
        }
    }

    /// The canonical path of the object itself (no subresource).
    pub fn object_path(&self) -> String {
        let name = self.name.as_deref().unwrap_or_default();
        match &self.namespace {
            Some(ns) => format!("/{}/namespaces/{ns}/{}/{name}", self.prefix, self.resource),
            None => format!("/{}/{}/{name}", self.prefix, self.resource),
        }
    }

    /// The collection path the object belongs to.
    pub fn collection_path(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("/{}/namespaces/{ns}/{}", self.prefix, self.resource),
            None => format!("/{}/{}", self.prefix, self.resource),
        }
    }

    /// The same target without name and subresource.
    pub fn collection(&self) -> Target {
        Target {
            name: None,
            subresource: None,
            ..self.clone()
        }
    }

    /// Whether an object at `object` belongs to this collection (a collection without a
    /// namespace spans all namespaces).
    pub fn contains(&self, object: &Target) -> bool {
        self.prefix == object.prefix
            && self.resource == object.resource
            && (self.namespace.is_none() || self.namespace == object.namespace)
    }
}
