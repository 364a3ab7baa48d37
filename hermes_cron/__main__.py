from hermes_cron.cli import main

main()
