//! API users kept in the store: users created over the API, and the user
//! generated at first start when none is configured. Only argon2id hashes
//! are stored. Every control plane reads this table about once a second,
//! so a change made on one node applies on all of them.

use sqlx::Row;

use crate::text::text;
use crate::{now_ms, Store, StoreError};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// `admin`, `operator` or `viewer`; checked by the control plane.
    pub role: String,
    /// The user dts generated at first start.
    pub generated: bool,
    pub created_at: i64,
}

impl Store {
    pub async fn stored_users(&self) -> Result<Vec<StoredUser>, StoreError> {
        let rows =
            sqlx::query("SELECT name, password_hash, role, generated, created_at FROM dts_auth_users ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredUser {
                    name: text(r, "name")?,
                    password_hash: text(r, "password_hash")?,
                    role: text(r, "role")?,
                    generated: r.try_get::<i64, _>("generated")? != 0,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Adds the user unless one with that name exists. Returns true when this
    /// call added it: with several control planes starting at once, exactly
    /// one of them wins (and prints a generated password).
    pub async fn insert_user_if_absent(&self, user: &StoredUser) -> Result<bool, StoreError> {
        let sql = self
            .backend
            .insert_ignore("dts_auth_users (name, password_hash, role, generated, created_at)", "(?, ?, ?, ?, ?)");
        let done = sqlx::query(&self.backend.sql(&sql))
            .bind(user.name.clone())
            .bind(user.password_hash.clone())
            .bind(user.role.clone())
            .bind(i64::from(user.generated))
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Changes a user's password hash and/or role; false when no such user.
    pub async fn update_user(
        &self,
        name: &str,
        password_hash: Option<&str>,
        role: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE dts_auth_users SET password_hash = COALESCE(?, password_hash), role = COALESCE(?, role) \
                   WHERE name = ?";
        let done = sqlx::query(&self.backend.sql(sql))
            .bind(password_hash.map(str::to_owned))
            .bind(role.map(str::to_owned))
            .bind(name.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a user; false when no such user.
    pub async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.backend.sql("DELETE FROM dts_auth_users WHERE name = ?"))
            .bind(name.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
