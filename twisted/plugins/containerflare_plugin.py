from twisted.application.service import ServiceMaker

containerflare = ServiceMaker(
    "containerflare",
    "containerflare._tap",
    "Serve a Klein app in Cloudflare Containers or Google Cloud Run.",
    "containerflare",
)
