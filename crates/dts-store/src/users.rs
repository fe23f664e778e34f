//! API users that dts created itself: the user generated at first start when
//! none is configured. Only an argon2id hash is stored.

use crate::text::text;
use crate::{now_ms, Store, StoreError};

/// A stored user: name and argon2id PHC hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub name: String,
    pub password_hash: String,
}

impl Store {
    pub async fn stored_users(&self) -> Result<Vec<StoredUser>, StoreError> {
        let rows =
            sqlx::query("SELECT name, password_hash FROM dts_auth_users ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(StoredUser { name: text(r, "name")?, password_hash: text(r, "password_hash")? }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Adds the user unless one with that name exists. Returns true when this
    /// call added it: with several control planes starting at once, exactly
    /// one of them wins and prints the generated password.
    pub async fn insert_user_if_absent(&self, user: &StoredUser) -> Result<bool, StoreError> {
        let sql = self.backend.insert_ignore("dts_auth_users (name, password_hash, created_at)", "(?, ?, ?)");
        let done = sqlx::query(&self.backend.sql(&sql))
            .bind(user.name.clone())
            .bind(user.password_hash.clone())
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
