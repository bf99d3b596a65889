<?php
// A request whose memory grows without end: the "leaking PHP script" of the seed's story.
// mb per step, us between steps, max MiB in all. The serving worker's PID goes to leak.pid.
ini_set('memory_limit', '-1');
set_time_limit(0);
@file_put_contents('/var/lib/oomtest/leak.pid', getmypid());
$mb = (int)($_GET['mb'] ?? 8);
$us = (int)($_GET['us'] ?? 20000);
$max = (int)($_GET['max'] ?? 8192);
$keep = [];
for ($i = 0; $i * $mb < $max; $i++) {
    $keep[] = str_repeat(chr(65 + $i % 26), $mb << 20);
    usleep($us);
}
echo count($keep), "\n";
