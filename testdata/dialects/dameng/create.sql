-- Golden SQL: dialect dameng (dbwarden-odbc), operation new_user (suggested creation statement).
-- Roles carry their own creation statements, as in Vault; this is the suggested one. Values that could leave their quotes are refused before any SQL runs.
-- Not run against a DM server here: review against DM's documentation.
-- Regenerate: DBWARDEN_BLESS=1 cargo test -p dbwarden-odbc --test golden
-- template: CREATE USER "{{name}}" IDENTIFIED BY "{{password}}" DEFAULT TABLESPACE MAIN;

-- case: username plain, password policy-style
--   username: "V_APP_1"
--   password: "Pw#2024abcdef%^X"
CREATE USER "V_APP_1" IDENTIFIED BY "Pw#2024abcdef%^X" DEFAULT TABLESPACE MAIN;

-- case: username plain, password non-ASCII
--   username: "V_APP_1"
--   password: "Pässwörd#1达梦"
CREATE USER "V_APP_1" IDENTIFIED BY "Pässwörd#1达梦" DEFAULT TABLESPACE MAIN;

-- case: username plain, password percent and semicolon
--   username: "V_APP_1"
--   password: "a%b;c#D1"
CREATE USER "V_APP_1" IDENTIFIED BY "a%b;c#D1" DEFAULT TABLESPACE MAIN;

-- case: username plain, password double quote (refused)
--   username: "V_APP_1"
--   password: "Pw\"1#abcdefg"
-- refused: the password contains the character '"', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username plain, password single quote (refused)
--   username: "V_APP_1"
--   password: "Pw'1#abcdefg"
-- refused: the password contains the character '\'', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username plain, password backslash (refused)
--   username: "V_APP_1"
--   password: "Pw\\1#abcdefg"
-- refused: the password contains the character '\\', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username single quote, password policy-style
--   username: "O'BRIEN"
--   password: "Pw#2024abcdef%^X"
-- refused: the username contains the character '\'', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username single quote, password non-ASCII
--   username: "O'BRIEN"
--   password: "Pässwörd#1达梦"
-- refused: the username contains the character '\'', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username single quote, password percent and semicolon
--   username: "O'BRIEN"
--   password: "a%b;c#D1"
-- refused: the username contains the character '\'', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username single quote, password double quote (refused)
--   username: "O'BRIEN"
--   password: "Pw\"1#abcdefg"
-- refused: the username contains the character '\'', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username single quote, password single quote (refused)
--   username: "O'BRIEN"
--   password: "Pw'1#abcdefg"
-- refused: the username contains the character '\'', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username single quote, password backslash (refused)
--   username: "O'BRIEN"
--   password: "Pw\\1#abcdefg"
-- refused: the username contains the character '\'', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username double quote, password policy-style
--   username: "A\"B"
--   password: "Pw#2024abcdef%^X"
-- refused: the username contains the character '"', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username double quote, password non-ASCII
--   username: "A\"B"
--   password: "Pässwörd#1达梦"
-- refused: the username contains the character '"', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username double quote, password percent and semicolon
--   username: "A\"B"
--   password: "a%b;c#D1"
-- refused: the username contains the character '"', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username double quote, password double quote (refused)
--   username: "A\"B"
--   password: "Pw\"1#abcdefg"
-- refused: the username contains the character '"', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username double quote, password single quote (refused)
--   username: "A\"B"
--   password: "Pw'1#abcdefg"
-- refused: the username contains the character '"', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username double quote, password backslash (refused)
--   username: "A\"B"
--   password: "Pw\\1#abcdefg"
-- refused: the username contains the character '"', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username backslash, password policy-style
--   username: "A\\B"
--   password: "Pw#2024abcdef%^X"
-- refused: the username contains the character '\\', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username backslash, password non-ASCII
--   username: "A\\B"
--   password: "Pässwörd#1达梦"
-- refused: the username contains the character '\\', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username backslash, password percent and semicolon
--   username: "A\\B"
--   password: "a%b;c#D1"
-- refused: the username contains the character '\\', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username backslash, password double quote (refused)
--   username: "A\\B"
--   password: "Pw\"1#abcdefg"
-- refused: the username contains the character '\\', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username backslash, password single quote (refused)
--   username: "A\\B"
--   password: "Pw'1#abcdefg"
-- refused: the username contains the character '\\', which cannot be substituted into a statement safely; change the password policy or username template

-- case: username backslash, password backslash (refused)
--   username: "A\\B"
--   password: "Pw\\1#abcdefg"
-- refused: the username contains the character '\\', which cannot be substituted into a statement safely; change the password policy or username template
