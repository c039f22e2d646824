-- wrk script: POST a JSON body taken from the WRK_BODY environment variable.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["Content-Type"] = "application/json"
