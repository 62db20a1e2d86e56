@problemName Tiny
@classLabel true a b
@data
1,2,3:a
1,2,3:c
