"""The process and the machine around the code: how a command starts (`entrypoint`), several processes
(`distributed`: start-up, barriers, agreement, "am I process 0"), the host allocator (`host_memory`:
huge pages for XLA's temporaries), and compiled programs kept on disk (`executables`)."""
