<?php
// A page that needs the database: 200 and the row count, or 503.
mysqli_report(MYSQLI_REPORT_OFF);
$m = @new mysqli('localhost', 'oomtest', 'oomtest', 'oomtest');
if ($m->connect_errno) { http_response_code(503); echo "db down\n"; exit; }
$r = $m->query('SELECT COUNT(*) FROM big');
if (!$r) { http_response_code(503); echo "query failed\n"; exit; }
echo $r->fetch_row()[0], "\n";
