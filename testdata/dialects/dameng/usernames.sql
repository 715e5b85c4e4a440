-- Golden SQL: dialect dameng (dbwarden-odbc), operation generate_username.
-- What a username template may produce: at most 128 bytes (not characters), a letter first, then letters, digits, _, $ or #. Over-long names are refused, never truncated.
-- Not run against a DM server here: review against DM's documentation.
-- Regenerate: DBWARDEN_BLESS=1 cargo test -p dbwarden-odbc --test golden

-- case: plain
--   rendered name: "V_APP_1"
-- accepted: V_APP_1

-- case: single quote
--   rendered name: "O'BRIEN"
-- refused: the username contains the character '\'', which cannot be substituted into a statement safely; change the password policy or username template

-- case: double quote
--   rendered name: "A\"B"
-- refused: the username contains the character '"', which cannot be substituted into a statement safely; change the password policy or username template

-- case: backslash
--   rendered name: "A\\B"
-- refused: the username contains the character '\\', which cannot be substituted into a statement safely; change the password policy or username template

-- case: percent and underscore (no LIKE is used)
--   rendered name: "V_%_1"
-- refused: the user name "V_%_1" does not follow DM's rule (a letter, then letters, digits, _, $ or #); adjust username_template (for example with `| replace "-" "_"`)

-- case: non-ASCII
--   rendered name: "用户_1"
-- refused: the user name "用户_1" does not follow DM's rule (a letter, then letters, digits, _, $ or #); adjust username_template (for example with `| replace "-" "_"`)

-- case: SQL injection attempt
--   rendered name: "X\"; DROP USER SYSDBA; --"
-- refused: the username contains the character '"', which cannot be substituted into a statement safely; change the password policy or username template

-- case: 128 ASCII bytes (the limit)
--   rendered name: "VAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
-- accepted: VAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA

-- case: 129 ASCII bytes
--   rendered name: "VAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
-- refused: the generated username is 129 bytes long, over the limit of 128 bytes (DM's identifier length); shorten username_template (for example with `| truncate 128`)

-- case: 43 CJK characters = 129 bytes
--   rendered name: "用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用用"
-- refused: the generated username is 129 bytes long, over the limit of 128 bytes (DM's identifier length); shorten username_template (for example with `| truncate 128`)

-- case: starts with a digit
--   rendered name: "1V_APP"
-- refused: the user name "1V_APP" does not follow DM's rule (a letter, then letters, digits, _, $ or #); adjust username_template (for example with `| replace "-" "_"`)

-- case: hyphen
--   rendered name: "V-APP-1"
-- refused: the user name "V-APP-1" does not follow DM's rule (a letter, then letters, digits, _, $ or #); adjust username_template (for example with `| replace "-" "_"`)

-- default template: {{ printf "V_%s_%s_%s_%s" (.DisplayName | truncate 8) (.RoleName | truncate 8) (random 20) (unix_time) | replace "-" "_" | replace "." "_" | uppercase | truncate 128 }}
