-- SCIM provisioning: a user an identity provider manages has a SCIM id (the resource's
-- address, /Users/{id}) and the provider's own externalId. Deleting the resource
-- clears both; the user stays, disabled, for the audit log.
ALTER TABLE users ADD COLUMN scim_id TEXT;
ALTER TABLE users ADD COLUMN scim_external_id TEXT;
ALTER TABLE users ADD COLUMN scim_updated_at BIGINT;
CREATE UNIQUE INDEX users_scim_id ON users (scim_id);
