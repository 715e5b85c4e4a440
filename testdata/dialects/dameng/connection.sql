-- Golden SQL: dialect dameng (dbwarden-odbc), operation connect.
-- The ODBC connection string given to Dameng's driver: {{username}} and {{password}} are replaced by the username and password details, braced when ODBC requires it. Passwords here are examples, not secrets.
-- Not run against a DM server here: review against DM's documentation.
-- Regenerate: DBWARDEN_BLESS=1 cargo test -p dbwarden-odbc --test golden
-- connection_url: Driver={DM8 ODBC DRIVER};Server=dm.example;TCP_PORT=5236;UID={{username}};PWD={{password}};

-- case: plain
--   username: "SYSDBA"
--   password: "Dameng#123"
Driver={DM8 ODBC DRIVER};Server=dm.example;TCP_PORT=5236;UID=SYSDBA;PWD=Dameng#123;

-- case: semicolon
--   username: "SYSDBA"
--   password: "Dm;123#abcd"
Driver={DM8 ODBC DRIVER};Server=dm.example;TCP_PORT=5236;UID=SYSDBA;PWD={Dm;123#abcd};

-- case: braces
--   username: "SYSDBA"
--   password: "Dm}{123#abcd"
Driver={DM8 ODBC DRIVER};Server=dm.example;TCP_PORT=5236;UID=SYSDBA;PWD={Dm}}{123#abcd};

-- case: plus and equals
--   username: "SYSDBA"
--   password: "Dm+=123#abcd"
Driver={DM8 ODBC DRIVER};Server=dm.example;TCP_PORT=5236;UID=SYSDBA;PWD={Dm+=123#abcd};

-- case: leading space
--   username: "SYSDBA"
--   password: " Dm123#abcd"
Driver={DM8 ODBC DRIVER};Server=dm.example;TCP_PORT=5236;UID=SYSDBA;PWD={ Dm123#abcd};

-- case: non-ASCII
--   username: "管理员"
--   password: "Pässwörd#1达梦"
Driver={DM8 ODBC DRIVER};Server=dm.example;TCP_PORT=5236;UID=管理员;PWD=Pässwörd#1达梦;

-- case: DSN without credentials in the string (they are appended)
--   connection_url: "DSN=dm8"
--   username: "SYSDBA"
--   password: "Dameng#123"
DSN=dm8;UID=SYSDBA;PWD=Dameng#123;
