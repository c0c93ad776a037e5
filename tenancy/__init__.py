"""Tenants (brands), memberships and roles, tenant-scoped querysets and permissions."""
