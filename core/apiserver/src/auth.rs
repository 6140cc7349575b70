//! Who is asking: users from verified client certificates (and, later, tokens).

/// The authenticated user of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user from a client certificate: CN is the name, each O a group; every authenticated
    /// user is also in `system:authenticated`, as in Kubernetes.
    pub fn from_cert(name: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Self {
            name,
            uid: String::new(),
            groups,
        }
    }
}
