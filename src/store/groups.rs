//! SCIM Groups: the groups an identity provider pushes and who is in them. A group's
//! `displayName` is the role its members carry upstream; members are users under SCIM
//! management, kept by username and shown by their SCIM id.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};
use crate::core::time::now;

/// A group as a SCIM client sees it.
#[derive(Debug, Clone)]
pub struct ScimGroup {
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// Members by SCIM id, with their usernames, in username order.
    pub members: Vec<GroupMember>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub scim_id: String,
    pub username: String,
}

/// A group to write: its name, external id and members (by username).
#[derive(Debug, Clone)]
pub struct GroupWrite<'a> {
    pub display_name: &'a str,
    pub external_id: Option<&'a str>,
    pub members: &'a [String],
}

/// What a write changed: every user whose memberships it touched.
#[derive(Debug, Default)]
pub struct GroupChange {
    pub group: Option<ScimGroup>,
    pub touched: Vec<String>,
}

/// What a replace did.
#[derive(Debug)]
pub enum Replaced {
    Done(GroupChange),
    NoSuchGroup,
    /// Another group has the new name.
    NameTaken,
    /// The members were no longer those the caller said it read: nothing written.
    Stale,
}

/// The key of a group's name: one group per name, whatever its case.
pub fn group_name_key(name: &str) -> String {
    name.to_lowercase()
}

const COLUMNS: &str = "id, display_name, external_id, created_at, updated_at";

fn group_row(row: &AnyRow) -> Result<ScimGroup, sqlx::Error> {
    Ok(ScimGroup {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        external_id: row.try_get("external_id")?,
        members: Vec::new(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Puts these users in a group, inside the caller's transaction.
async fn add_members(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    usernames: &[String],
) -> Result<(), StoreError> {
    for username in usernames {
        sqlx::query("INSERT INTO scim_group_members (group_id, username) VALUES ($1, $2)")
            .bind(id)
            .bind(username)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Store {
    async fn with_members(&self, mut groups: Vec<ScimGroup>) -> Result<Vec<ScimGroup>, StoreError> {
        for group in &mut groups {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT u.scim_id, u.username FROM scim_group_members m \
                 JOIN users u ON u.username = m.username \
                 WHERE m.group_id = $1 AND u.scim_id IS NOT NULL ORDER BY u.username",
            )
            .bind(&group.id)
            .fetch_all(&self.pool)
            .await?;
            group.members = rows
                .into_iter()
                .map(|(scim_id, username)| GroupMember { scim_id, username })
                .collect();
        }
        Ok(groups)
    }

    /// The group with this resource id.
    pub async fn scim_group(&self, id: &str) -> Result<Option<ScimGroup>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM scim_groups WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(group) = row.as_ref().map(group_row).transpose()? else {
            return Ok(None);
        };
        Ok(self.with_members(vec![group]).await?.pop())
    }

    /// Groups, oldest first (or the one named `display_name`, in any case), and how
    /// many match in all. `members` false leaves member lists empty.
    pub async fn scim_groups(
        &self,
        display_name: Option<&str>,
        offset: i64,
        limit: i64,
        members: bool,
    ) -> Result<(Vec<ScimGroup>, i64), StoreError> {
        const FILTER: &str = "($1 IS NULL OR name_key = $1)";
        let key = display_name.map(group_name_key);
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM scim_groups WHERE {FILTER}"))
                .bind(key.as_deref())
                .fetch_one(&self.pool)
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scim_groups WHERE {FILTER} \
             ORDER BY created_at, id LIMIT $2 OFFSET $3"
        ))
        .bind(key.as_deref())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let groups = rows.iter().map(group_row).collect::<Result<Vec<_>, _>>()?;
        if members {
            return Ok((self.with_members(groups).await?, total));
        }
        Ok((groups, total))
    }

    /// How many SCIM groups there are (any: the provider pushes groups).
    pub async fn scim_group_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM scim_groups")
            .fetch_one(&self.pool)
            .await?)
    }

    /// The usernames of SCIM users with these resource ids; `Err` names the first id no
    /// SCIM user has.
    pub async fn scim_usernames(
        &self,
        ids: &[String],
    ) -> Result<Result<Vec<String>, String>, StoreError> {
        let mut names = Vec::with_capacity(ids.len());
        for id in ids {
            let name: Option<String> =
                sqlx::query_scalar("SELECT username FROM users WHERE scim_id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
            match name {
                Some(name) => names.push(name),
                None => return Ok(Err(id.clone())),
            }
        }
        names.sort();
        names.dedup();
        Ok(Ok(names))
    }

    /// Creates a group; `None` if one of that name exists (in any case).
    pub async fn scim_group_create(
        &self,
        id: &str,
        group: GroupWrite<'_>,
    ) -> Result<Option<GroupChange>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let at = now();
        let done = sqlx::query(
            "INSERT INTO scim_groups (id, display_name, name_key, external_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(group.display_name)
        .bind(group_name_key(group.display_name))
        .bind(group.external_id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        add_members(&mut tx, id, group.members).await?;
        tx.commit().await?;
        Ok(Some(GroupChange {
            group: self.scim_group(id).await?,
            touched: group.members.to_vec(),
        }))
    }

    /// Replaces a group's name, external id and members; with `read`, only if its
    /// members (by username) are still those.
    pub async fn scim_group_replace(
        &self,
        id: &str,
        group: GroupWrite<'_>,
        read: Option<&BTreeSet<String>>,
    ) -> Result<Replaced, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The row is updated first: that waits for any other write of the group to
        // commit (SQLite: takes the write lock), so the members read next are current.
        let updated = sqlx::query(
            "UPDATE scim_groups SET display_name = $1, name_key = $2, external_id = $3, \
             updated_at = $4 WHERE id = $5",
        )
        .bind(group.display_name)
        .bind(group_name_key(group.display_name))
        .bind(group.external_id)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await;
        match updated {
            Ok(done) if done.rows_affected() == 0 => return Ok(Replaced::NoSuchGroup),
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Ok(Replaced::NameTaken)
            }
            Err(e) => return Err(e.into()),
        }
        let before: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT m.username, u.scim_id FROM scim_group_members m \
             JOIN users u ON u.username = m.username WHERE m.group_id = $1",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        // As `with_members` shows them: members who are SCIM users.
        let shown: BTreeSet<String> = before
            .iter()
            .filter(|(_, scim_id)| scim_id.is_some())
            .map(|(u, _)| u.clone())
            .collect();
        if read.is_some_and(|read| *read != shown) {
            return Ok(Replaced::Stale);
        }
        sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        add_members(&mut tx, id, group.members).await?;
        tx.commit().await?;
        let mut touched: Vec<String> = before.into_iter().map(|(u, _)| u).collect();
        touched.extend(group.members.iter().cloned());
        touched.sort();
        touched.dedup();
        Ok(Replaced::Done(GroupChange {
            group: self.scim_group(id).await?,
            touched,
        }))
    }

    /// Deletes a group; the users who were in it. `None`: no such group.
    pub async fn scim_group_delete(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The group's row first, as a replace takes it: two writes of one group take
        // turns (rather than deadlock), and the members deleted are the current ones.
        let locked = sqlx::query("UPDATE scim_groups SET updated_at = $1 WHERE id = $2")
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if locked.rows_affected() == 0 {
            return Ok(None);
        }
        let members: Vec<(String,)> =
            sqlx::query_as("DELETE FROM scim_group_members WHERE group_id = $1 RETURNING username")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM scim_groups WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(members.into_iter().map(|(u,)| u).collect()))
    }

    /// The groups each of these users is in: `(id, displayName)` by name.
    pub async fn groups_of(
        &self,
        usernames: &[&str],
    ) -> Result<BTreeMap<String, Vec<(String, String)>>, StoreError> {
        let mut out = BTreeMap::new();
        for username in usernames {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT g.id, g.display_name FROM scim_group_members m \
                 JOIN scim_groups g ON g.id = m.group_id WHERE m.username = $1 \
                 ORDER BY g.display_name",
            )
            .bind(*username)
            .fetch_all(&self.pool)
            .await?;
            out.insert(username.to_string(), rows);
        }
        Ok(out)
    }

    /// Drops a user from every group (their SCIM resource is deleted).
    pub async fn leave_all_groups(&self, username: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM scim_group_members WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
