-- Per-user preferences, one row per user and key.
-- cryomigrate:apply
CREATE TABLE user_preferences (
    user_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL DEFAULT '{}',  -- JSON; the braces are data, not a template
    PRIMARY KEY (user_id, key)
);

-- cryomigrate:rollback
DROP TABLE user_preferences;
